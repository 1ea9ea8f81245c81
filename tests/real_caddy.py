"""Debian's real Caddy (2.6.2) for tests: `caddy validate` / `caddy adapt` of a generated Caddyfile, and `caddy run`.

Without the binary the tests skip with the reason, except under CI (CI=true), where .ci/run installs it and a
missing binary is a failure.
"""

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.standins.launcher import base_env, spawn, stop, wait_ready


def caddy_binary() -> str:
    """Path of the `caddy` binary; skips the test (fails under CI) when it is not installed."""
    found = shutil.which("caddy")
    if found:
        return found
    message = "caddy is not installed (apt-get install caddy; .ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _env(extra: Mapping[str, str], home: Path) -> dict[str, str]:
    # Caddy keeps state under XDG dirs; point them into the test's directory, never the user's home.
    return base_env({"XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home), **extra})


def validate(caddyfile: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """`caddy validate` of this Caddyfile (it provisions every module: certificates are loaded, matchers compiled)."""
    path = directory / "Caddyfile"
    path.write_text(caddyfile)
    return subprocess.run(
        [caddy_binary(), "validate", "--adapter", "caddyfile", "--config", str(path)],
        capture_output=True, text=True, timeout=60, env=_env({}, directory),
    )


def adapt(caddyfile: str, directory: Path) -> dict:
    """The JSON config `caddy adapt` makes of this Caddyfile; fails the test on any error or warning."""
    path = directory / "Caddyfile"
    path.write_text(caddyfile)
    done = subprocess.run(
        [caddy_binary(), "adapt", "--adapter", "caddyfile", "--config", str(path)],
        capture_output=True, text=True, timeout=60, env=_env({}, directory),
    )
    assert done.returncode == 0, done.stderr
    # A warning is where 2.6.2 and 2.11 are most likely to part: treat it as an error.
    assert '"level":"warn"' not in done.stderr, done.stderr
    return json.loads(done.stdout)


@contextmanager
def running(caddyfile: str, directory: Path, health_port: int, env: Mapping[str, str] = {}) -> Iterator[subprocess.Popen[bytes]]:
    """`caddy run` with this Caddyfile and envs until the block ends; ready once its health listener answers."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "Caddyfile"
    path.write_text(caddyfile)
    log = directory / "caddy.log"
    process = spawn(
        [caddy_binary(), "run", "--adapter", "caddyfile", "--config", str(path)], _env(env, directory), log, cwd=directory
    )
    try:
        wait_ready(f"http://127.0.0.1:{health_port}/health", process, timeout=30, log_path=log)
        # The health site and the others start together; a moment more for every listener.
        time.sleep(0.2)
        yield process
    finally:
        stop(process)
