"""Streaming through the edge and the gateway (issue 15, point 5a): chunks/s and time to first chunk, and CPU per chunk.

One run, on loopback, with the prod stack as the program renders it:
  direct    the vLLM stand-in streaming 200 token events per completion, 20 ms apart, one event per read
            (tests/standins/vllm_stream.py, started with the vLLM container's command line);
  edge      the same completions through the real Caddy (Debian's) with the generated edge Caddyfile (`tls:
            internal`, a certificate from a test CA like the stack CA) in front of the gateway replicas the prod
            stack renders (`replicas` LiteLLM 1.108.7 processes, each with its `--num_workers`), with the rendered
            config and envs and the real Redis;
at 16, 32 and 64 concurrent streams (each a keep-alive connection, one completion after another). Then CPU-ms per
1000 chunks of one gateway process (one replica, one worker) with today's settings against the new defaults
(components.litellm.STREAMING_ENVS), both loaded at once in each round.

Client, stand-ins, Caddy and every gateway share this machine's CPUs (2 on the build machine, shared with other
jobs): the figures are what this machine gives, printed with their ratios, not a GPU server's.

Run: .venv/bin/python benchmarks/streaming.py [--streams 16,32,64] [--requests 1] [--cpu-streams 16] [--cpu-rounds 3]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import shutil
import ssl
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stream_load import Load, LoadFigures, StreamTarget, run_load, run_loads  # noqa: E402
from benchmarks.stream_stack import MODEL, StreamStack, prod_stack, rendered_setup, todays_setup  # noqa: E402
from components import caddy  # noqa: E402
from tests.contract import harness  # noqa: E402
from tests.standins.launcher import free_port  # noqa: E402

EDGE_ADDRESS = "127.0.0.1"
GATEWAY_CONTAINER = re.compile(r"^gateway(-\d+)?$")
GOAL_RATIO = 0.9  # issue 15: through edge and gateway, at least 0.9 of direct at 64 streams
GOAL_CPU = 2 / 3  # issue 15: per-chunk CPU down by a third


def replica_count(rendered: harness.Rendered) -> int:
    """LiteLLM containers the program declares (`gateway`, `gateway-2`, ...)."""
    return sum(1 for r in rendered.plan.of_type(harness.CONTAINER) if GATEWAY_CONTAINER.match(r.name))


def warm(target: StreamTarget) -> None:
    figures = run_load(target, 4, 1)
    if figures.errors or not figures.tokens:
        raise RuntimeError(f"{target.label}: warm-up failed: {figures.errors[:3]}")


def throughput_table(rows: list[tuple[int, LoadFigures, LoadFigures]]) -> str:
    lines = [
        "| streams | direct chunks/s | edge + gateway chunks/s | x direct | TTFC p50 ms direct / edge | TTFC p95 ms direct / edge "
        "| gateway CPU-ms per 1000 chunks | edge CPU-ms per 1000 chunks | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for streams, direct, edge in rows:
        lines.append(
            f"| {streams} | {direct.tokens_per_s:.0f} | {edge.tokens_per_s:.0f} | {edge.tokens_per_s / direct.tokens_per_s:.2f} "
            f"| {direct.first_token_ms(0.5):.0f} / {edge.first_token_ms(0.5):.0f} "
            f"| {direct.first_token_ms(0.95):.0f} / {edge.first_token_ms(0.95):.0f} "
            f"| {edge.cpu_ms_per_1000('gateways'):.0f} | {edge.cpu_ms_per_1000('edge'):.0f} | {len(direct.errors) + len(edge.errors)} |"
        )
    return "\n".join(lines)


def cpu_table(runs: dict[str, list[LoadFigures]]) -> str:
    lines = [
        "| single gateway (1 replica, 1 worker) | CPU-ms per 1000 chunks (median) | x today (median of rounds) | x today per round "
        "| chunks/s | TTFC p50 ms |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for label, figures in runs.items():
        per = [f.cpu_ms_per_1000("gateway") for f in figures]
        ratios = [p / t.cpu_ms_per_1000("gateway") for p, t in zip(per, runs["today"])]
        lines.append(
            f"| {label} | {statistics.median(per):.0f} | {statistics.median(ratios):.2f} | {', '.join(f'{r:.2f}' for r in ratios)} "
            f"| {statistics.median(f.tokens_per_s for f in figures):.0f} | {statistics.median(f.first_token_ms(0.5) for f in figures):.0f} |"
        )
    return "\n".join(lines)


def run(bench: StreamStack, streams: Sequence[int], requests: int, chunks: int, cpu_streams: int, cpu_rounds: int, edge_dir: Path) -> dict[str, Any]:
    from tests import real_caddy
    from tests.stack_ca_files import make_ca, write_server_files

    rendered = bench.rendered
    prod = rendered_setup(rendered, label="prod replica")
    replicas = replica_count(rendered)
    singles = {"today": todays_setup(rendered), "new defaults": rendered_setup(rendered, label="new defaults", workers=1)}
    binds = harness.loopback_addresses({name: 4000 for name in [*singles, *(f"replica-{i}" for i in range(1, replicas + 1))]})
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        prod_futures = [pool.submit(bench.start, prod, binds[f"replica-{i}"]) for i in range(1, replicas + 1)]
        single_futures = {label: pool.submit(bench.start, setup, binds[label]) for label, setup in singles.items()}
        prod_gateways = [f.result() for f in prod_futures]
        single_gateways = {label: f.result() for label, f in single_futures.items()}
    start_s = time.monotonic() - started

    ca = make_ca()
    cert_file, key_file = write_server_files(edge_dir / "tls", *ca.issue(ip_addresses=[EDGE_ADDRESS]))
    https_port, health_port = free_port(), free_port()
    upstreams = [f"{g.url.split('//', 1)[1]}" for g in prod_gateways]
    caddyfile = caddy.render_edge_caddyfile(
        tls="internal", domain=EDGE_ADDRESS, upstreams=upstreams, https_port=https_port,
        cert_file=str(cert_file), key_file=str(key_file), health_port=health_port,
    )
    client_tls = ssl.create_default_context(cadata=ca.cert_pem)
    with real_caddy.running(caddyfile, edge_dir / "edge", health_port) as edge_process:
        edge = StreamTarget("edge", EDGE_ADDRESS, https_port, bench.deployment.master_key, MODEL, client_tls)
        time.sleep(1.0)  # the first active health check admits the replicas
        for target in [bench.engine, edge, *(bench.target(g, label) for label, g in single_gateways.items())]:
            warm(target)
        gateway_pids = [g.process.pid for g in prod_gateways]
        rows = []
        for count in streams:
            direct = run_load(bench.engine, count, requests, {"engine": [bench.engine_pid]})
            through = run_load(edge, count, requests, {"gateways": gateway_pids, "edge": [edge_process.pid], "engine": [bench.engine_pid]})
            rows.append((count, direct, through))
    cpu_runs: dict[str, list[LoadFigures]] = {label: [] for label in singles}
    for _ in range(cpu_rounds):
        # Both at once, so that both see the same machine (it is shared: one measured alone moves by 20 %).
        loads = {label: Load(bench.target(g, label), cpu_streams, {"gateway": [g.process.pid]}) for label, g in single_gateways.items()}
        for label, figures in run_loads(loads, requests).items():
            cpu_runs[label].append(figures)

    print(f"prod stack: {replicas} gateway replicas x {prod.workers} workers (LiteLLM 1.108.7) behind the edge (Caddy "
          f"{caddy_version()}, tls internal); vLLM stand-in streaming {chunks} token events per completion; "
          f"{requests} completion(s) per stream; gateways started in {start_s:.0f} s\n")
    print(throughput_table(rows))
    last = rows[-1]
    ratio = last[2].tokens_per_s / last[1].tokens_per_s
    print(f"\nat {last[0]} streams: {ratio:.2f} of direct (goal {GOAL_RATIO}): {'met' if ratio >= GOAL_RATIO else 'NOT met'}\n")
    print(f"CPU per streamed chunk, one gateway process each, both loaded at once with {cpu_streams} streams, {cpu_rounds} rounds:\n")
    print(cpu_table(cpu_runs))
    today = statistics.median(f.cpu_ms_per_1000("gateway") for f in cpu_runs["today"])
    new = statistics.median(f.cpu_ms_per_1000("gateway") for f in cpu_runs["new defaults"])
    ratio_cpu = statistics.median(
        n.cpu_ms_per_1000("gateway") / t.cpu_ms_per_1000("gateway") for n, t in zip(cpu_runs["new defaults"], cpu_runs["today"])
    )
    print(f"\nnew defaults / today: {ratio_cpu:.2f} (goal {GOAL_CPU:.2f}): {'met' if ratio_cpu <= GOAL_CPU else 'NOT met'}")
    errors = [e for _, d, t in rows for e in d.errors + t.errors] + [e for runs in cpu_runs.values() for f in runs for e in f.errors]
    if errors:
        print(f"\nerrors ({len(errors)}): {errors[:5]}")
    return {
        "throughput": [{"streams": n, "direct": d.tokens_per_s, "edge": t.tokens_per_s,
                        "gateway_cpu_ms_per_1000": t.cpu_ms_per_1000("gateways")} for n, d, t in rows],
        "cpu_ms_per_1000": {"today": today, "new defaults": new, "ratio": ratio_cpu},
    }


def caddy_version() -> str:
    import subprocess

    done = subprocess.run(["caddy", "version"], capture_output=True, text=True, timeout=30)
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout else "?"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="16,32,64", help="concurrent streams, comma-separated (default 16,32,64)")
    parser.add_argument("--requests", type=int, default=1, help="completions per stream, one after another (default 1)")
    parser.add_argument("--chunks", type=int, default=200, help="token events per completion (default 200)")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="pause between token events (default 20)")
    parser.add_argument("--cpu-streams", type=int, default=16, help="streams per gateway in the CPU comparison (default 16)")
    parser.add_argument("--cpu-rounds", type=int, default=3, help="rounds of the CPU comparison, both gateways at once (default 3)")
    args = parser.parse_args(argv)
    if not shutil.which("caddy"):
        parser.error("caddy is not installed: apt-get install caddy (.ci/run installs it)")
    streams = [int(s) for s in args.streams.split(",") if s.strip()]
    with prod_stack(args.chunks, args.interval_ms) as bench:
        return run(bench, streams, args.requests, args.chunks, args.cpu_streams, args.cpu_rounds, bench.work / "edge")


if __name__ == "__main__":
    main()
