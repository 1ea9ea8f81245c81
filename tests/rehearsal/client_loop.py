"""A client loop for the rehearsal: chat completions through the edge, streamed and not, at a steady rate while the
stack changes; what failed and the longest stall (issue 15, benchmark 5b). Printed, never asserted on timing."""

from __future__ import annotations

import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

import httpx

#: Requests started per second (the issue asks for at least 10), and how many may be in flight at once.
RATE_PER_S = 12.0
MAX_IN_FLIGHT = 48
REQUEST_TIMEOUT_S = 60.0
PROMPT = [{"role": "user", "content": "Reply with the single word: ok."}]


@dataclass(frozen=True)
class Call:
    started: float
    ended: float
    streamed: bool
    ok: bool
    detail: str = ""


@dataclass
class LoopFigures:
    """What the loop saw, seconds relative to its start."""

    calls: list[Call] = field(default_factory=list)
    duration: float = 0.0

    @property
    def failed(self) -> list[Call]:
        return [c for c in self.calls if not c.ok]

    @property
    def longest_stall(self) -> float:
        """The longest time in which no call completed successfully (from the loop's start to its end)."""
        ends = sorted(c.ended for c in self.calls if c.ok)
        marks = [0.0, *ends, self.duration]
        return max(b - a for a, b in zip(marks, marks[1:])) if len(marks) > 1 else self.duration

    @property
    def slowest(self) -> float:
        return max((c.ended - c.started for c in self.calls), default=0.0)

    def summary(self) -> str:
        streamed = sum(c.streamed for c in self.calls)
        rate = len(self.calls) / self.duration if self.duration else 0.0
        failed = self.failed
        text = (
            f"client loop during the change: {len(self.calls)} requests in {self.duration:.1f}s ({rate:.1f}/s, "
            f"{streamed} streamed), {len(failed)} failed, longest stall {self.longest_stall:.2f}s, slowest {self.slowest:.2f}s"
        )
        if failed:
            text += "; first failures: " + "; ".join(f"+{c.started:.1f}s {c.detail}" for c in failed[:3])
        return text


def completions_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/v1/chat/completions"


def chat(client: httpx.Client, url: str, headers: dict[str, str], model: str, stream: bool) -> tuple[bool, str]:
    """One short chat completion at `url` (completions_url): whether it succeeded (HTTP 200 with choices, or a
    stream ending in `[DONE]`), and what came back."""
    body = {"model": model, "messages": PROMPT, "max_tokens": 8, "stream": stream}
    try:
        if stream:
            with client.stream("POST", url, json=body, headers=headers) as response:
                lines = [line for line in response.iter_lines() if line]
                ok = response.status_code == 200 and bool(lines) and lines[-1].strip() == "data: [DONE]"
                return ok, f"HTTP {response.status_code}" + ("" if ok else f" {lines[-1][:120] if lines else 'no data'}")
        response = client.post(url, json=body, headers=headers)
        ok = response.status_code == 200 and bool(response.json().get("choices"))
        return ok, f"HTTP {response.status_code}" + ("" if ok else f" {response.text[:120]}")
    except (httpx.HTTPError, ValueError) as error:
        return False, f"{type(error).__name__}: {error}"[:160]


class ClientLoop:
    """`with ClientLoop(url, key, model, ca_file) as loop: change()`; then `loop.figures`."""

    def __init__(self, url: str, key: str, model: str, ca_file: Optional[str], rate: float = RATE_PER_S) -> None:
        self.url = completions_url(url)
        self.headers = {"Authorization": f"Bearer {key}"}
        self.model = model
        self.rate = rate
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self.client = httpx.Client(verify=verify, timeout=REQUEST_TIMEOUT_S)
        self.figures = LoopFigures()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT)
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> "ClientLoop":
        self._t0 = time.monotonic()
        self._dispatcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._dispatcher.join()
        self._pool.shutdown(wait=True)
        self.client.close()
        self.figures.duration = time.monotonic() - self._t0
        self.figures.calls.sort(key=lambda c: c.started)

    def _dispatch(self) -> None:
        n = 0
        while not self._stop.is_set():
            self._pool.submit(self._call, n % 2 == 1)
            n += 1
            # A steady schedule: the n-th request starts at n / rate whatever the others take.
            self._stop.wait(max(0.0, self._t0 + n / self.rate - time.monotonic()))

    def _call(self, stream: bool) -> None:
        started = time.monotonic() - self._t0
        ok, detail = chat(self.client, self.url, self.headers, self.model, stream)
        with self._lock:
            self.figures.calls.append(Call(started, time.monotonic() - self._t0, stream, ok, detail))
