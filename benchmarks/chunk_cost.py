"""CPU per streamed chunk of one LiteLLM 1.108.7 gateway process, for each candidate setting (issue 15, point 3).

Every candidate is today's prod gateway (the config and envs the program renders for Pulumi.prod.yaml, without
components.litellm.STREAMING_ENVS; one worker) with one change. All of them run at once, each a real `litellm`
process in front of the same vLLM stand-in (200 token events per completion, 20 ms apart, one event per read) and
the same Redis. Each round loads every gateway at once with the same number of streams, so that all of them see the
same machine (this one is shared: a gateway measured alone moves by 20 % from one run to the next); each gateway's
CPU (user + system, every process of its tree, from /proc) is divided by the chunks it passed, and set against
today's in the same round.

What each candidate would cost the stack, if anything, is printed beside it: only a candidate that loses nothing is
a default (components/litellm.py).

Run: .venv/bin/python benchmarks/chunk_cost.py [--streams 8] [--requests 2] [--rounds 5] [--more]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stream_load import Load, LoadFigures, process_tree, run_load, run_loads  # noqa: E402
from benchmarks.stream_stack import GatewaySetup, prod_stack, todays_setup  # noqa: E402
from components import litellm as litellm_component  # noqa: E402
from tests.contract import harness  # noqa: E402


@dataclass(frozen=True)
class Candidate:
    """One change to today's gateway, and what the stack would lose with it ("" = nothing)."""

    label: str
    litellm_settings: dict[str, Any] = field(default_factory=dict)  # None drops the key
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    loses: str = ""

    def setup(self, today: GatewaySetup) -> GatewaySetup:
        config = yaml.safe_load(today.config_text)
        for key, value in self.litellm_settings.items():
            if value is None:
                config["litellm_settings"].pop(key, None)
            else:
                config["litellm_settings"][key] = value
        text = yaml.safe_dump(config, sort_keys=True, default_flow_style=False) if self.litellm_settings else today.config_text
        return replace(today, label=self.label, config_text=text, env={**today.env, **self.env}, args=(*today.args, *self.args))


CANDIDATES = [
    Candidate("today"),
    Candidate("new defaults (STREAMING_ENVS)", env=dict(litellm_component.STREAMING_ENVS)),
    Candidate("--run_granian (Rust HTTP server, in the `proxy` extra)", args=("--run_granian",),
              loses="nothing seen here; its figures are no better"),
    Candidate("disable_streaming_logging (reference)", litellm_settings={"disable_streaming_logging": True},
              loses="spend, usage and metrics of every streamed request"),
    Candidate("no prometheus callback (reference)", litellm_settings={"callbacks": None},
              loses="the gateway's metrics (monitoring)"),
]
MORE = [
    Candidate("disable_aiohttp_transport (httpx's own)", litellm_settings={"disable_aiohttp_transport": True},
              loses="nothing; its figures are no better"),
    Candidate("turn_off_message_logging", litellm_settings={"turn_off_message_logging": True},
              loses="message text in logging callbacks (none configured)"),
    Candidate("disable_token_counter", litellm_settings={"disable_token_counter": True},
              loses="token counts for engines that report no usage"),
    Candidate("disable_end_user_cost_tracking", litellm_settings={"disable_end_user_cost_tracking": True},
              loses="spend per end user"),
    Candidate("LITELLM_LOG=ERROR", env={"LITELLM_LOG": "ERROR"}, loses="the access log"),
]


def rss_mib(pid: int) -> float:
    total = 0
    for child in process_tree([pid]):
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def table(candidates: Sequence[Candidate], runs: dict[str, list[LoadFigures]], rss: dict[str, float]) -> str:
    lines = [
        "| candidate | CPU-ms per 1000 chunks (median) | x today (median of rounds) | x today per round | chunks/s | TTFC p50 ms "
        "| RSS MiB | loses |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for c in candidates:
        per = [f.cpu_ms_per_1000("gateway") for f in runs[c.label]]
        ratios = [p / t.cpu_ms_per_1000("gateway") for p, t in zip(per, runs["today"])]
        lines.append(
            f"| {c.label} | {statistics.median(per):.0f} | {statistics.median(ratios):.2f} | {', '.join(f'{r:.2f}' for r in ratios)} "
            f"| {statistics.median(f.tokens_per_s for f in runs[c.label]):.0f} "
            f"| {statistics.median(f.first_token_ms(0.5) for f in runs[c.label]):.0f} | {rss[c.label]:.0f} | {c.loses or '-'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams per gateway in a round (default 8)")
    parser.add_argument("--requests", type=int, default=2, help="completions per stream per round (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, every gateway loaded at once (default 5)")
    parser.add_argument("--chunks", type=int, default=200, help="token events per completion (default 200)")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="pause between token events (default 20)")
    parser.add_argument("--more", action="store_true", help=f"also {', '.join(c.label for c in MORE)}")
    args = parser.parse_args(argv)
    candidates = CANDIDATES + (MORE if args.more else [])
    with prod_stack(args.chunks, args.interval_ms) as bench:
        today = todays_setup(bench.rendered)
        binds = harness.loopback_addresses({c.label: 4000 for c in candidates})
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            futures = {c.label: pool.submit(bench.start, c.setup(today), binds[c.label]) for c in candidates}
            gateways = {label: f.result() for label, f in futures.items()}
        start_s = time.monotonic() - started
        targets = {label: bench.target(g, label) for label, g in gateways.items()}
        for target in targets.values():
            run_load(target, 4, 1)  # warm-up: first requests load lazily imported code
        runs: dict[str, list[LoadFigures]] = {c.label: [] for c in candidates}
        for _ in range(args.rounds):
            loads = {label: Load(target, args.streams, {"gateway": [gateways[label].process.pid]}) for label, target in targets.items()}
            for label, figures in run_loads(loads, args.requests).items():
                runs[label].append(figures)
        rss = {label: rss_mib(g.process.pid) for label, g in gateways.items()}
    print(f"one LiteLLM 1.108.7 process each (prod config, Redis, prometheus callback), {len(candidates)} started in "
          f"{start_s:.0f} s; {args.rounds} rounds, each loading every gateway at once "
          f"with {args.streams} streams x {args.requests} completion(s) of {args.chunks} chunks\n")
    print(table(candidates, runs, rss))
    errors = [e for figures in runs.values() for f in figures for e in f.errors]
    if errors:
        print(f"\nerrors ({len(errors)}): {errors[:5]}")
    return {label: statistics.median(f.cpu_ms_per_1000("gateway") for f in figures) for label, figures in runs.items()}


if __name__ == "__main__":
    main()
