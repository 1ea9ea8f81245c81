"""Streaming load for the benchmarks: concurrent streamed chat completions, and the CPU a process tree spends.

The client is plain asyncio over sockets (uvloop when installed), so it costs little next to what it measures: it
parses the HTTP/1.1 chunked framing and counts token events, nothing more. CPU is read from /proc (user + system
time of every live process under the given roots), so a gateway's workers and helper processes are included.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The token events of tests/standins/vllm_stream.py ("t0 ", "t1 ", ...), as an engine and as LiteLLM write them.
TOKEN_MARKERS = (b'"content":"t', b'"content": "t')
TAIL = max(len(m) for m in TOKEN_MARKERS) - 1
PROMPT = [{"role": "user", "content": "Count."}]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class StreamTarget:
    """Where streamed chat completions are sent: host and port (TLS when `tls` is a context), key and model."""

    label: str
    host: str
    port: int
    key: str
    model: str
    tls: ssl.SSLContext | None = None
    server_name: str | None = None


@dataclass
class LoadFigures:
    """What one load run saw."""

    streams: int
    tokens: int = 0
    elapsed_s: float = 0.0
    first_token_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # process group -> CPU ms during the run

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s else 0.0

    def first_token_ms(self, fraction: float) -> float:
        if not self.first_token_s:
            return float("nan")
        ordered = sorted(self.first_token_s)
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]

    def cpu_ms_per_1000(self, group: str) -> float:
        return 1000 * self.cpu_ms[group] / self.tokens if self.tokens else float("nan")


def _count(buffer: bytes) -> int:
    return sum(buffer.count(marker) for marker in TOKEN_MARKERS)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], started: float, figures: LoadFigures) -> tuple[int, bytes]:
    """Read one response body; count token events as they arrive. Returns (tokens, the first bytes of the body)."""
    tokens, tail, first = 0, b"", b""

    def seen(data: bytes) -> None:
        nonlocal tokens, tail, first
        found = _count(tail + data)
        if found and tokens == 0:
            figures.first_token_s.append(time.perf_counter() - started)
        tokens += found
        tail = (tail + data)[-TAIL:]
        if len(first) < 512:
            first += data[: 512 - len(first)]

    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            seen((await reader.readexactly(size + 2))[:-2])
    elif "content-length" in headers:
        seen(await reader.readexactly(int(headers["content-length"])))
    else:
        while data := await reader.read(65536):
            seen(data)
    return tokens, first


async def _stream_loop(target: StreamTarget, requests: int, figures: LoadFigures, start: asyncio.Event) -> None:
    """One client: a keep-alive connection, `requests` streamed completions one after another."""
    body = json.dumps({"model": target.model, "messages": PROMPT, "stream": True, "max_tokens": 256}).encode()
    host = target.server_name or target.host
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{target.port}\r\nauthorization: Bearer {target.key}\r\n"
        f"content-type: application/json\r\naccept: text/event-stream\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    await start.wait()
    writer = None
    try:
        for _ in range(requests):
            if writer is None:
                reader, writer = await asyncio.open_connection(
                    target.host, target.port, ssl=target.tls, server_hostname=target.server_name if target.tls else None
                )
            started = time.perf_counter()
            writer.write(head + body)
            status_head = await reader.readuntil(b"\r\n\r\n")
            lines = status_head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            tokens, first = await _read_body(reader, headers, started, figures)
            if status != 200:
                figures.errors.append(f"HTTP {status}: {first[:200]!r}")
            figures.tokens += tokens
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        figures.errors.append(f"{type(error).__name__}: {error}")
    finally:
        if writer is not None:
            writer.close()


def process_tree(roots: Iterable[int]) -> set[int]:
    """The roots and every live descendant."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = {r for r in roots if r in parents}
    grew = True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree and pid not in tree}
        tree |= found
        grew = bool(found)
    return tree


def cpu_ms(roots: Iterable[int]) -> float:
    """User + system CPU of the process trees under `roots`, in ms (live processes; /proc/<pid>/stat)."""
    total = 0
    for pid in process_tree(roots):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total * 1000 / CLOCK_TICKS


@dataclass(frozen=True)
class Load:
    """One share of a run: `streams` clients on `target`, and the process groups whose CPU is charged to it."""

    target: StreamTarget
    streams: int
    groups: dict[str, Sequence[int]] = field(default_factory=dict)


async def _run(loads: dict[str, Load], requests: int) -> dict[str, LoadFigures]:
    figures = {label: LoadFigures(load.streams) for label, load in loads.items()}
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(_stream_loop(load.target, requests, figures[label], start))
        for label, load in loads.items()
        for _ in range(load.streams)
    ]
    await asyncio.sleep(0)
    before = {label: {name: cpu_ms(pids) for name, pids in load.groups.items()} for label, load in loads.items()}
    began = time.perf_counter()
    start.set()
    done_at: dict[str, float] = {}

    async def finish(label: str, own: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*own)
        done_at[label] = time.perf_counter()

    per_label: dict[str, list[asyncio.Task[None]]] = {}
    index = 0
    for label, load in loads.items():
        per_label[label] = tasks[index: index + load.streams]
        index += load.streams
    await asyncio.gather(*(finish(label, own) for label, own in per_label.items()))
    for label, load in loads.items():
        figures[label].elapsed_s = done_at[label] - began
        figures[label].cpu_ms = {name: cpu_ms(pids) - before[label][name] for name, pids in load.groups.items()}
    return figures


def run_loads(loads: dict[str, Load], requests: int) -> dict[str, LoadFigures]:
    """Every load at once (so each sees the same machine), each client `requests` streamed completions; CPU of
    each load's process groups over the whole run (a group must serve only its own load)."""
    try:
        import uvloop

        return uvloop.run(_run(loads, requests))
    except ImportError:
        return asyncio.run(_run(loads, requests))


def run_load(target: StreamTarget, streams: int, requests: int, groups: dict[str, Sequence[int]] | None = None) -> LoadFigures:
    """`streams` concurrent clients, each `requests` streamed completions; CPU of each process group meanwhile."""
    return run_loads({target.label: Load(target, streams, dict(groups or {}))}, requests)[target.label]

