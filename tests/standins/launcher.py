"""Start and stop stand-in processes for tests: free ports, readiness polling, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
# Env a child needs to run at all; everything else is passed explicitly so the host's
# proxies, DATABASE_URL or API keys never leak into a test.
BASE_ENV_NAMES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal env for a child process, plus `extra`."""
    env = {name: os.environ[name] for name in BASE_ENV_NAMES if name in os.environ}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at `host` right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET a URL; returns (status, body) for any HTTP status, raises OSError if unreachable."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_ready(
    url: str,
    process: subprocess.Popen[Any],
    timeout: float,
    headers: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll `url` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}{_tail(log_path)}")
        try:
            if http_get(url, headers, timeout=2.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s{_tail(log_path)}")


def _tail(log_path: Path | None, lines: int = 40) -> str:
    if log_path is None or not log_path.exists():
        return ""
    return "\n--- log tail ---\n" + "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def spawn(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path = REPO_ROOT
) -> subprocess.Popen[bytes]:
    """Start a process in its own session (so stop() reaches its children), logging to a file."""
    log: IO[bytes] = open(log_path, "ab")
    try:
        return subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    finally:
        log.close()


def stop(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Terminate a process started by spawn() and its process group; kill after `grace` s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=grace)


def standin_argv(engine: str, args: Sequence[str] = ()) -> list[str]:
    """The command line running one stand-in module with this interpreter."""
    return [sys.executable, "-m", f"tests.standins.{engine}", *args]


def start_standin(
    engine: str,
    args: Sequence[str],
    env: Mapping[str, str],
    ready_url: str,
    log_path: Path,
    ready_headers: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> subprocess.Popen[bytes]:
    """Run `python -m tests.standins.<engine> ARGS` and wait until `ready_url` answers 200."""
    process = spawn(standin_argv(engine, args), base_env(env), log_path)
    try:
        wait_ready(ready_url, process, timeout, ready_headers, log_path)
    except BaseException:
        stop(process)
        raise
    return process


def recorded_requests(base_url: str) -> list[dict[str, Any]]:
    """What a stand-in at `base_url` has received so far."""
    status, body = http_get(f"{base_url}/__stub__/requests")
    if status != 200:
        raise RuntimeError(f"{base_url}/__stub__/requests answered {status}")
    return list(json.loads(body))


def clear_requests(base_url: str) -> None:
    """Empty a stand-in's request log."""
    request = urllib.request.Request(f"{base_url}/__stub__/requests", method="DELETE")
    with urllib.request.urlopen(request, timeout=5):
        pass
