"""The `llmstack:infinity` section: one InfinityServer loading every model listed."""

from components import InfinityServer, InfinityServerArgs

from ..schema import Infinity, StackConfig
from ..sites import Site, site_of
from . import EngineDeployment, hf_token, placement


def server_args(section: Infinity, site: Site, stack: StackConfig) -> InfinityServerArgs:
    """InfinityServer args for the `llmstack:infinity` section on its site."""
    args: InfinityServerArgs = {
        "network_name": site.network.name,
        "models": [{"name": m.name, "model": m.model, "mode": m.mode} for m in section.models],
    }
    args.update(placement(section))  # type: ignore[typeddict-item]
    args.update(hf_token(stack))  # type: ignore[typeddict-item]
    return args


def deploy(stack: StackConfig, sites: dict[str, Site]) -> list[EngineDeployment]:
    """The InfinityServer of the stack, or nothing when the section is absent."""
    section = stack.infinity
    if section is None:
        return []
    site = site_of(stack, sites, section.host)
    server = InfinityServer("infinity", server_args(section, site, stack), opts=site.options())
    return [EngineDeployment(server, server.model_entries, server.backend_keys, list(section.gpus or []), site.name)]
