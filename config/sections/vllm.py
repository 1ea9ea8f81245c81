"""The `llmstack:vllm` section: one VllmServer per entry."""

from collections.abc import Sequence
from typing import Optional

import pulumi

from components import VllmServer, VllmServerArgs

from ..schema import StackConfig, Vllm
from ..sites import Site, site_of
from . import EngineDeployment, hf_token


def server_args(entry: Vllm, site: Site, stack: StackConfig, utilization: Optional[float]) -> VllmServerArgs:
    """VllmServer args for one `llmstack:vllm` entry."""
    args: VllmServerArgs = {
        "served_model_name": entry.name,
        "model": entry.model,
        "network_name": site.network.name,
        "gpus": list(entry.gpus or ["all"]),
        "extra_args": list(entry.extra_args),
    }
    optional = {
        "gpu_memory_utilization": utilization,
        "tensor_parallel_size": entry.tensor_parallel_size,
        "max_model_len": entry.max_model_len,
        "reasoning_parser": entry.reasoning_parser,
        "tool_call_parser": entry.tool_call_parser,
        "hf_overrides": entry.hf_overrides,
        "image": entry.image,
        "health_start_period": entry.health_start_period,
    }
    args.update({k: v for k, v in optional.items() if v is not None})  # type: ignore[typeddict-item]
    args.update(hf_token(stack))  # type: ignore[typeddict-item]
    return args


def deploy(
    stack: StackConfig,
    sites: dict[str, Site],
    utilizations: dict[str, Optional[float]],
    start_after: dict[str, Sequence[pulumi.Resource]],
) -> list[EngineDeployment]:
    """A VllmServer per entry, started after the services it shares GPUs with (`start_after`, by model name)."""
    deployed = []
    for entry in stack.vllm:
        site = site_of(stack, sites, entry.host)
        server = VllmServer(
            entry.name,
            server_args(entry, site, stack, utilizations.get(entry.name)),
            opts=site.options(depends_on=list(start_after.get(entry.name, []))),
        )
        deployed.append(
            EngineDeployment(server, server.model_entries, server.backend_keys, list(entry.gpus or ["all"]), site.name)
        )
    return deployed
