"""GPU device ids as NVIDIA's container runtime takes them, and a tensor-parallel size that fits the GPUs given."""

import re
from collections.abc import Iterable
from typing import Any

from components import vllm_cli

from .errors import ConfigIssue, key_path

# `nvidia-smi -L` names a GPU by index (`0`) or UUID (`GPU-<uuid>`), a MIG slice by `MIG-<uuid>`.
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
DEVICE_ID = re.compile(rf"^([0-9]{{1,3}}|GPU-{_UUID}|MIG-{_UUID})$")
DEVICE_ID_FIX = 'list ids such as ["0", "1"], or write `all` alone'


def is_device_id(text: str) -> bool:
    return bool(DEVICE_ID.match(text))


def _pipeline_size(extra_args: list[str]) -> int:
    """The pipeline-parallel size set in extraArgs (1 when absent or unreadable)."""
    for i, arg in enumerate(extra_args):
        if vllm_cli.flag_name(arg) == "--pipeline-parallel-size":
            value = arg.split("=", 1)[1] if "=" in arg else (extra_args[i + 1] if i + 1 < len(extra_args) else "")
            return int(value) if value.isdigit() and int(value) > 0 else 1
    return 1


def tensor_parallel_issues(entry: Any, loc: tuple, stack: Any) -> Iterable[ConfigIssue]:
    """A tensorParallelSize that does not match the GPUs the entry gets (times the pipeline-parallel size)."""
    if entry.tensor_parallel_size is None:
        return
    gpus = list(entry.gpus or ["all"])
    if gpus == ["all"]:
        host = stack.hosts.get(entry.host or sorted(stack.hosts)[0])
        count = len(host.gpus) if host is not None and host.gpus else None
        what = "the host's GPU inventory lists"
    else:
        count, what = len(gpus), "gpus lists"
    ranks = entry.tensor_parallel_size * _pipeline_size(list(entry.extra_args))
    if count is not None and ranks != count:
        yield ConfigIssue(
            key_path((*loc, "tensorParallelSize")),
            f"vLLM would run {ranks} rank(s) but {what} {count} GPU(s)",
            f"list {ranks} GPU id(s) under gpus, or set tensorParallelSize to {count} (or leave it out: one rank per listed GPU)",
        )
