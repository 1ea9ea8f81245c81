"""The `llmstack:speaches` section: one SpeachesServer for every model listed."""

from typing import Literal


from components import SpeachesServer, SpeachesServerArgs

from ..schema import Speaches, StackConfig
from ..sites import Site, site_of
from . import EngineDeployment, hf_token, placement

# The stack file names the route; LiteLLM names the mode.
LITELLM_MODES: dict[str, Literal["audio_transcription", "audio_speech"]] = {
    "transcription": "audio_transcription",
    "speech": "audio_speech",
}


def server_args(section: Speaches, site: Site, stack: StackConfig) -> SpeachesServerArgs:
    """SpeachesServer args for the `llmstack:speaches` section on its site."""
    host = stack.hosts[site.name]
    args: SpeachesServerArgs = {
        "network_name": site.network.name,
        "docker_host": host.docker,
        "ssh_opts": list(host.ssh_opts),
        "models": [{"name": m.name, "model": m.model, "mode": LITELLM_MODES[m.mode]} for m in section.models],
    }
    args.update(placement(section))  # type: ignore[typeddict-item]
    args.update(hf_token(stack))  # type: ignore[typeddict-item]
    return args


def deploy(stack: StackConfig, sites: dict[str, Site]) -> list[EngineDeployment]:
    """The SpeachesServer of the stack, or nothing when the section is absent."""
    section = stack.speaches
    if section is None:
        return []
    site = site_of(stack, sites, section.host)
    server = SpeachesServer("speaches", server_args(section, site, stack), opts=site.options())
    return [EngineDeployment(server, server.model_entries, server.backend_keys, list(section.gpus or []), site.name)]
