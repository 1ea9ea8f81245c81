"""What a client sees when one of two replicas of a model goes down mid-loop, behind the real LiteLLM proxy (1.108.7).

Pulumi.prod.yaml's first vLLM block as two replicas (`replicas:`, one per GPU of one host; `--engine ollama`:
its Ollama block), rendered by the program and deployed like the contract test (tests/contract/replicas.py):
a stand-in per replica container, the real proxy with the uploaded config, a real Redis when Debian's
redis-server is installed. A client loop sends chat completions at a fixed rate, each from its own
thread; after `--fault-after` seconds replica 1 either
  refused    dies: its address refuses connections, or
  no answer  is frozen (SIGSTOP): connections are accepted, nothing answers.
Each fault runs twice, side by side:
  rendered   the program's defaults (health checks every healthCheckInterval, health-check routing, cooldowns
             on the router, weighted failover);
  plain      the same config without those settings: what LiteLLM does on its own, and what the program
             rendered before them (its allowed_fails/cooldown_time sat where LiteLLM 1.108.7 ignores them).
Both use the same requestTimeout (`--request-timeout`, put in the stack file's gateway section): it is how
long an attempt on a replica that does not answer waits before the retry moves on.

Figures: failed requests before and after the first detection interval (healthCheckInterval + the probe
timeout, counted from the fault), requests that needed a retry or took over a second, and the time to recover
(from the fault to the start of the last request that failed, was retried or was slow).

Run: .venv/bin/python benchmarks/failover.py [--requests 600] [--rate 10] [--fault-after 3] [--request-timeout 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.contract import harness  # noqa: E402
from tests.contract.replicas import (  # noqa: E402
    RunningReplicas,
    attempted_retries,
    deploy_replicas,
    interval_bound,
    plain_defaults,
    replica_stack,
)

SLOW_S = 1.0  # a stand-in answers in milliseconds: a request over a second waited for a dead replica


@dataclass(frozen=True)
class Outcome:
    start: float  # seconds since the fault (negative or -inf: before it)
    seconds: float
    ok: bool
    retries: int
    detail: str = ""


@dataclass(frozen=True)
class Figures:
    label: str
    fault: str
    total: int
    failed_before: int
    failed_after: int
    retried: int
    slow: int
    recover_s: float
    p50_ms: float
    max_s: float


def one_request(replicas: RunningReplicas, client: httpx.Client, fault_at: list[float]) -> Outcome:
    start = time.monotonic()
    try:
        reply = replicas.call(client)
        ok, retries, detail = reply.status_code == 200, attempted_retries(reply), "" if reply.status_code == 200 else f"HTTP {reply.status_code}"
    except httpx.HTTPError as error:
        ok, retries, detail = False, 0, type(error).__name__
    end = time.monotonic()
    return Outcome(start - fault_at[0], end - start, ok, retries, detail)


def client_loop(replicas: RunningReplicas, requests: int, rate: float, fault_after: float, fault: Callable[[], None], client_timeout: float) -> list[Outcome]:
    """`requests` requests started at `rate` per second; `fault()` runs `fault_after` seconds in."""
    fault_at = [float("inf")]
    begin = time.monotonic()

    def trigger() -> None:
        time.sleep(fault_after)
        fault_at[0] = time.monotonic()
        fault()

    local = threading.local()

    def worker(i: int) -> Outcome:
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=client_timeout)
        return one_request(replicas, local.client, fault_at)

    injector = threading.Thread(target=trigger)
    injector.start()
    # A thread per request: requests waiting on a dead replica never hold back the schedule.
    with ThreadPoolExecutor(max_workers=requests) as pool:
        outcomes = list(pool.map(worker, range(requests)))
    injector.join()
    return outcomes


def figures(label: str, fault: str, outcomes: list[Outcome], bound: float) -> Figures:
    after_fault = [o for o in outcomes if o.start >= 0]
    bad = [o for o in after_fault if not o.ok or o.retries > 0 or o.seconds > SLOW_S]
    latencies = [o.seconds for o in after_fault if o.ok] or [0.0]
    return Figures(
        label=label,
        fault=fault,
        total=len(outcomes),
        failed_before=sum(1 for o in outcomes if not o.ok and o.start < bound),
        failed_after=sum(1 for o in outcomes if not o.ok and o.start >= bound),
        retried=sum(1 for o in after_fault if o.retries > 0),
        slow=sum(1 for o in after_fault if o.seconds > SLOW_S),
        recover_s=max((o.start for o in bad), default=0.0),
        p50_ms=statistics.median(latencies) * 1000,
        max_s=max(latencies),
    )


def run(args: argparse.Namespace) -> list[Figures]:
    prod = harness.stack_file("prod")
    block = prod["vllm"][0] if args.engine == "vllm" else prod[args.engine]
    stack = replica_stack(block, args.engine, count=2, gateway={"requestTimeout": args.request_timeout}, stack="bench")
    bound = interval_bound(stack.config_text)
    # Before, during and after the first detection interval, and long enough for a retry that waited out
    # every attempt on the dead replica (num_retries + 1 request timeouts).
    client_timeout = (stack.rendered.config["litellm_settings"]["num_retries"] + 2) * args.request_timeout + 30
    results = []
    for fault in args.faults:
        for label, text in (("rendered", stack.config_text), ("plain", plain_defaults(stack.config_text))):
            if label not in args.configs:
                continue
            with tempfile.TemporaryDirectory(prefix="failover-bench-") as tmp, deploy_replicas(stack, Path(tmp), text) as running:
                with httpx.Client(timeout=30) as warm:
                    for _ in range(10):
                        running.call(warm)
                stop = (lambda r=running: r.refuse(1)) if fault == "refused" else (lambda r=running: r.freeze(1))
                outcomes = client_loop(running, args.requests, args.rate, args.fault_after, stop, client_timeout)
                results.append(figures(label, fault, outcomes, bound))
                if args.timeline:
                    print_timeline(label, fault, outcomes)
                print(f"  done: {label:8} {fault}", file=sys.stderr, flush=True)
    print(f"{args.engine} model {stack.model}; detection interval: {bound:.0f} s (healthCheckInterval + probe timeout); requestTimeout {args.request_timeout} s; "
          f"{args.requests} requests at {args.rate}/s, fault after {args.fault_after} s")
    return results


def print_timeline(label: str, fault: str, outcomes: list[Outcome]) -> None:
    """Per second after the fault: requests started, failed, retried, slow."""
    print(f"{fault} / {label}: second after the fault: started failed retried slow max_s")
    for second in range(-1, int(max(o.start for o in outcomes)) + 1):
        bucket = [o for o in outcomes if second <= o.start < second + 1]
        if bucket:
            print(f"  {second:3d}: {len(bucket):3d} {sum(not o.ok for o in bucket):3d} {sum(o.retries > 0 for o in bucket):3d} "
                  f"{sum(o.seconds > SLOW_S for o in bucket):3d} {max(o.seconds for o in bucket):6.2f}")


def print_table(results: list[Figures]) -> None:
    header = f"{'fault':10} {'config':9} {'requests':>8} {'failed<det':>10} {'failed>=det':>11} {'retried':>7} {'slow>1s':>7} {'recover s':>9} {'p50 ms':>7} {'max s':>6}"
    print(header)
    print("-" * len(header))
    for f in results:
        print(f"{f.fault:10} {f.label:9} {f.total:8d} {f.failed_before:10d} {f.failed_after:11d} {f.retried:7d} {f.slow:7d} {f.recover_s:9.1f} {f.p50_ms:7.1f} {f.max_s:6.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rate", type=float, default=10.0, help="requests started per second")
    parser.add_argument("--fault-after", type=float, default=3.0, help="seconds into the loop")
    parser.add_argument("--request-timeout", type=int, default=10, help="the stack's gateway requestTimeout, seconds")
    parser.add_argument("--faults", nargs="+", default=["refused", "no answer"], choices=["refused", "no answer"])
    parser.add_argument("--configs", nargs="+", default=["rendered", "plain"], choices=["rendered", "plain"])
    parser.add_argument("--engine", default="vllm", choices=["vllm", "ollama"], help="Pulumi.prod.yaml's engine whose model is replicated")
    parser.add_argument("--timeline", action="store_true", help="also print per-second counts after the fault")
    args = parser.parse_args()
    if args.requests < 200:
        parser.error("--requests must be at least 200")
    print_table(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
