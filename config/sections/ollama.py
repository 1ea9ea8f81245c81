"""The `llmstack:ollama` section: one OllamaServer for every model listed."""

import pulumi

from components import OllamaModel, OllamaServer, OllamaServerArgs

from .. import schema
from ..schema import Ollama, StackConfig
from ..sites import Site, site_of
from . import EngineDeployment, placement


def model_spec(entry: schema.OllamaModel) -> OllamaModel:
    """One `models` entry as OllamaServer takes it."""
    model: OllamaModel = {"name": entry.name, "model": entry.model}
    if entry.max_tokens:
        model["max_tokens"] = entry.max_tokens
    return model


def server_args(section: Ollama, site: Site, stack: StackConfig) -> OllamaServerArgs:
    """OllamaServer args for the `llmstack:ollama` section on its site."""
    host = stack.hosts[site.name]
    args: OllamaServerArgs = {
        "network_name": site.network.name,
        "docker_host": host.docker,
        "ssh_opts": list(host.ssh_opts),
        "models": [model_spec(m) for m in section.models],
        "env": dict(section.env),
    }
    args.update(placement(section))  # type: ignore[typeddict-item]
    return args


def deploy(stack: StackConfig, sites: dict[str, Site]) -> list[EngineDeployment]:
    """The OllamaServer of the stack, or nothing when the section is absent."""
    section = stack.ollama
    if section is None:
        return []
    site = site_of(stack, sites, section.host)
    server = OllamaServer("ollama", server_args(section, site, stack), opts=site.options())
    return [EngineDeployment(server, server.model_entries, pulumi.Output.from_input({}), list(section.gpus or []), site.name)]
