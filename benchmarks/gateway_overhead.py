"""What the LiteLLM gateway adds in front of an engine: latency (p50, p99) and throughput, on loopback.

One run measures the same vLLM stand-in three ways:
  direct     the stand-in itself, with its own key and served model name;
  generated  the real LiteLLM proxy (1.108.7) with the config the program renders for
             Pulumi.prod.yaml, unchanged (Redis-backed router, allowed_fails, cooldown, drop_params),
             with the gateway container's envs (no DATABASE_URL: no Postgres here) and, when Debian's
             redis-server is installed, a real Redis with the generated password;
  reference  the same proxy and model entries with only the reference deployment's settings:
             num_retries 3, request_timeout 3600, routing_strategy simple-shuffle, no Redis.
Everything runs as in the contract test (tests/contract/harness.py): the stand-in is started with
the vLLM container's command line and envs, the gateway reaches it under the config's host name.

Latency: sequential non-streaming chat completions on one keep-alive connection, after a warm-up.
Throughput: a fixed number of concurrent clients for a fixed time. The client, the gateway and the
stand-in share this machine's CPUs: compare the rows with each other, not with a GPU server.

Run: .venv/bin/python benchmarks/gateway_overhead.py [--requests 300] [--concurrency 8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.contract import harness  # noqa: E402
from tests.standins.gateway import start_gateway, stop_gateway  # noqa: E402

PROMPT = [{"role": "user", "content": "Reply with the single word: ok."}]
REFERENCE_SETTINGS = {
    "litellm_settings": {"num_retries": 3, "request_timeout": 3600},
    "router_settings": {"routing_strategy": "simple-shuffle"},
}


@dataclass(frozen=True)
class Target:
    label: str
    url: str  # base URL whose /v1/chat/completions is called
    key: str
    model: str


@dataclass(frozen=True)
class Figures:
    label: str
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int


def _post(client: httpx.Client, target: Target) -> None:
    reply = client.post(
        f"{target.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {target.key}"},
        json={"model": target.model, "messages": PROMPT, "max_tokens": 16},
    )
    if reply.status_code != 200:
        raise RuntimeError(f"{target.label}: HTTP {reply.status_code}: {reply.text[:200]}")


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def latency(target: Target, requests: int, warmup: int) -> list[float]:
    """Seconds per request, sequential, one connection."""
    with httpx.Client(timeout=60) as client:
        for _ in range(warmup):
            _post(client, target)
        samples = []
        for _ in range(requests):
            start = time.perf_counter()
            _post(client, target)
            samples.append(time.perf_counter() - start)
    return samples


def throughput(target: Target, concurrency: int, seconds: float) -> tuple[float, int]:
    """Completed requests per second with `concurrency` clients for `seconds`, and the error count."""
    done, errors = [0] * concurrency, [0] * concurrency
    start_line = threading.Barrier(concurrency + 1)
    stop_at: list[float] = []

    def worker(i: int) -> None:
        with httpx.Client(timeout=60) as client:
            _post(client, target)  # connect before the clock starts
            start_line.wait()
            while time.perf_counter() < stop_at[0]:
                try:
                    _post(client, target)
                    done[i] += 1
                except (RuntimeError, httpx.HTTPError):
                    errors[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at.append(time.perf_counter() + 3600)
    start_line.wait()
    begin = time.perf_counter()
    stop_at[0] = begin + seconds
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - begin), sum(errors)


def measure(target: Target, requests: int, concurrency: int, seconds: float) -> tuple[list[float], float, int]:
    """Latency samples (s), then throughput (req/s) and its error count."""
    samples = latency(target, requests, warmup=max(10, requests // 10))
    rps, errors = throughput(target, concurrency, seconds)
    return samples, rps, errors


def figures(label: str, runs: Sequence[tuple[list[float], float, int]]) -> Figures:
    """Latency percentiles over every run's samples; throughput averaged over the runs."""
    samples = [s for run in runs for s in run[0]]
    return Figures(
        label,
        percentile(samples, 0.50) * 1000,
        percentile(samples, 0.99) * 1000,
        statistics.fmean(run[1] for run in runs),
        sum(run[2] for run in runs),
    )


def reference_config(generated: dict[str, Any]) -> dict[str, Any]:
    """The generated model entries and master key with only the reference deployment's settings."""
    return {
        "model_list": generated["model_list"],
        "general_settings": {"master_key": generated["general_settings"]["master_key"]},
        **REFERENCE_SETTINGS,
    }


def table(rows: Sequence[Figures]) -> str:
    """A Markdown table: figures, then each gateway against the stand-in and against the reference."""
    direct = rows[0]
    reference = next((r for r in rows if r.label.startswith("gateway, reference")), None)
    lines = [
        "| target | p50 ms | p99 ms | req/s | added p50 ms | p50 x direct | req/s x direct | p50 x reference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        vs_ref = f"{row.p50_ms / reference.p50_ms:.2f}" if reference and row is not direct else "-"
        added = f"{row.p50_ms - direct.p50_ms:.1f}" if row is not direct else "-"
        lines.append(
            f"| {row.label} | {row.p50_ms:.1f} | {row.p99_ms:.1f} | {row.rps:.0f} | {added} | "
            f"{row.p50_ms / direct.p50_ms:.1f} | {row.rps / direct.rps:.2f} | {vs_ref} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="prod", help="stack file whose rendered config is measured (default prod)")
    parser.add_argument("--model", help="vLLM model name to call (default: the first vLLM model of the stack)")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests for latency (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients for throughput (default 8)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="gateway runs per config, alternating (default 2)")
    parser.add_argument("--no-redis", action="store_true", help="run the generated config without a Redis")
    args = parser.parse_args(argv)

    raw = harness.stack_file(args.stack)
    rendered = harness.render(raw, args.stack)
    wire = harness.wire_expectations(raw, rendered)
    # The direct call speaks vLLM's OpenAI API, so the measured model must be a vLLM one.
    vllm_models = [c.name for c in wire.values() if rendered.engine(c.container).engine == "vllm"]
    name = args.model or (vllm_models[0] if vllm_models else "")
    if name not in vllm_models:
        parser.error(f"the {args.stack} stack has no vLLM model {name!r} to measure; vLLM models: {vllm_models or 'none'}")
    call = wire[name]
    redis = harness.redis_available() and not args.no_redis
    per_round = max(1, args.requests // args.rounds)
    generated_label = f"gateway, generated config{'' if redis else ' (no Redis)'}"
    reference_label = "gateway, reference settings"
    runs: dict[str, list[tuple[list[float], float, int]]] = {generated_label: [], reference_label: []}
    with tempfile.TemporaryDirectory(prefix="gateway-overhead-") as tmp:
        work = Path(tmp)
        configs = {generated_label: work / "generated.yaml", reference_label: work / "reference.yaml"}
        configs[generated_label].write_text(rendered.config_text)  # unchanged
        configs[reference_label].write_text(yaml.safe_dump(reference_config(rendered.config), sort_keys=True))
        with harness.deploy(rendered, work / "deployment", redis=redis, with_gateway=False) as deployment:
            backend = deployment.backends[call.container]
            direct = Target("stand-in direct", backend.url, call.key or "", call.model)
            results = [figures(direct.label, [measure(direct, args.requests, args.concurrency, args.seconds)])]
            # One gateway at a time (they share the CPUs), in alternating order, each started afresh.
            for round_ in range(args.rounds):
                for label in (list(configs) if round_ % 2 == 0 else list(reversed(configs))):
                    url, process = start_gateway(
                        configs[label], harness.gateway_env(rendered), hosts=deployment.hosts, workdir=work / f"gateway-{round_}-{configs[label].stem}"
                    )
                    try:
                        target = Target(label, url, deployment.master_key, name)
                        runs[label].append(measure(target, per_round, args.concurrency, args.seconds / args.rounds))
                    finally:
                        stop_gateway(process)
    results += [figures(label, label_runs) for label, label_runs in runs.items()]
    print(f"{args.stack} stack, model {name} ({call.container}, vLLM stand-in), loopback: {args.requests} sequential "
          f"requests and {args.concurrency} concurrent clients for {args.seconds:g} s per target; each gateway in "
          f"{args.rounds} alternating runs, one gateway up at a time\n")
    print(table(results))
    errors = {f.label: f.errors for f in results if f.errors}
    if errors:
        print(f"\nerrors during throughput runs: {errors}")
    return {f.label: {"p50_ms": round(f.p50_ms, 2), "p99_ms": round(f.p99_ms, 2), "rps": round(f.rps, 1)} for f in results}


if __name__ == "__main__":
    main()
