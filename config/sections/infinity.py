"""The `llmstack:infinity` section: one InfinityServer loading every model listed."""

import pulumi

from components import InfinityServer, InfinityServerArgs

from ..schema import Infinity, StackConfig
from ..sites import Site, site_of
from . import EngineDeployment


def server_args(section: Infinity, site: Site, stack: StackConfig) -> InfinityServerArgs:
    """InfinityServer args for the `llmstack:infinity` section on its site."""
    args: InfinityServerArgs = {
        "network_name": site.network.name,
        "models": [{"name": m.name, "model": m.model, "mode": m.mode} for m in section.models],
    }
    if section.gpus:
        args["gpus"] = list(section.gpus)
    if section.image:
        args["image"] = section.image
    if stack.hf_token is not None:
        args["hf_token"] = pulumi.Output.secret(stack.hf_token.plaintext or "")
    return args


def deploy(stack: StackConfig, sites: dict[str, Site]) -> list[EngineDeployment]:
    """The InfinityServer of the stack, or nothing when the section is absent."""
    section = stack.infinity
    if section is None:
        return []
    site = site_of(stack, sites, section.host)
    server = InfinityServer("infinity", server_args(section, site, stack), opts=site.options())
    return [EngineDeployment(server, server.model_entries, server.backend_keys, list(section.gpus or []), site.name)]
