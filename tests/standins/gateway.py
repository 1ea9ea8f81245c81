"""Run the real LiteLLM proxy (PyPI litellm[proxy]) for tests, with container host names mapped.

`start_gateway(config, env, hosts={"qwen3": "127.0.0.2"})` makes the names in a rendered config
resolve to loopback addresses: preferably with a private /etc/hosts in a mount namespace
(`unshare --mount`, needs root), else with a sitecustomize that maps Python's resolver."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal, Mapping, NamedTuple, Sequence

from .launcher import base_env, free_port, spawn, stop, wait_ready

HOSTMAP_DIR = Path(__file__).resolve().parent / "hostmap"
READY_PATH = "/health/liveliness"
Resolver = Literal["auto", "unshare", "sitecustomize"]
# Bind-mounts the generated hosts file over /etc/hosts, then execs the real command.
UNSHARE_SCRIPT = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'


class Gateway(NamedTuple):
    """A running proxy: unpack as `url, process = start_gateway(...)`."""

    url: str
    process: subprocess.Popen[bytes]


def litellm_executable() -> str:
    """The `litellm` script beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "litellm"
    found = str(beside) if beside.exists() else shutil.which("litellm")
    if not found:
        raise FileNotFoundError("litellm not found: pip install 'litellm[proxy]==1.108.7'")
    return found


@functools.lru_cache(maxsize=1)
def unshare_works() -> bool:
    """Whether this process may create a mount namespace and bind-mount over /etc/hosts."""
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = ["unshare", "--mount", "--", "sh", "-c", UNSHARE_SCRIPT, "sh", "/etc/hosts", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def hosts_file_text(hosts: Mapping[str, str], original: str) -> str:
    """The original hosts file with the mapped names first (the first match wins)."""
    lines = [f"{ip}\t{name}" for name, ip in sorted(hosts.items())]
    return "\n".join(["# llmstack test name mapping", *lines, original.rstrip("\n"), ""])


def with_hosts(
    argv: Sequence[str],
    env: Mapping[str, str],
    hosts: Mapping[str, str],
    workdir: Path,
    resolver: Resolver = "auto",
) -> tuple[list[str], dict[str, str]]:
    """Wrap a command so that `hosts` names resolve to their addresses inside it."""
    if not hosts:
        return list(argv), dict(env)
    if resolver == "unshare" or (resolver == "auto" and unshare_works()):
        hosts_path = workdir / "hosts"
        hosts_path.write_text(hosts_file_text(hosts, Path("/etc/hosts").read_text()))
        return ["unshare", "--mount", "--", "sh", "-c", UNSHARE_SCRIPT, "sh", str(hosts_path), *argv], dict(env)
    mapped = dict(env)
    mapped["LLMSTACK_HOSTS"] = json.dumps(dict(hosts))
    mapped["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOSTMAP_DIR), env.get("PYTHONPATH", "")) if p)
    return list(argv), mapped


def start_gateway(
    config_path: str | os.PathLike[str],
    env: Mapping[str, str],
    hosts: Mapping[str, str] | None = None,
    port: int | None = None,
    bind: str = "127.0.0.1",
    timeout: float = 120.0,
    workdir: str | os.PathLike[str] | None = None,
    resolver: Resolver = "auto",
    extra_args: Sequence[str] = (),
) -> Gateway:
    """Start `litellm --config FILE --port N [extra_args]` and wait for /health/liveliness.

    `env` is added to a minimal base env (no DATABASE_URL, no proxies) with
    LITELLM_LOCAL_MODEL_COST_MAP=True. The log goes to `<workdir>/litellm.log`."""
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="litellm-"))
    work.mkdir(parents=True, exist_ok=True)
    port = port or free_port(bind)
    child_env = base_env({"LITELLM_LOCAL_MODEL_COST_MAP": "True", **env})
    child_env.pop("PYTHONPATH", None)  # the repo's `config` package must not shadow anything
    argv = [litellm_executable(), "--config", str(Path(config_path).resolve()), "--host", bind, "--port", str(port), *extra_args]
    argv, child_env = with_hosts(argv, child_env, hosts or {}, work, resolver)
    log_path = work / "litellm.log"
    process = spawn(argv, child_env, log_path, cwd=work)
    url = f"http://{bind}:{port}"
    try:
        wait_ready(url + READY_PATH, process, timeout, log_path=log_path)
    except BaseException:
        stop(process)
        raise
    return Gateway(url, process)


def stop_gateway(process: subprocess.Popen[Any]) -> None:
    """Stop a proxy started by start_gateway (and anything it spawned)."""
    stop(process, grace=15.0)
