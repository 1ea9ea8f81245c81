"""The one engine builder: image, retained volume, key, secret envs and container of a model server, from its description.

Each engine module (vllm.py, ollama.py, infinity.py, speaches.py) keeps only what is its own: its image
facts, its command, its healthcheck and its LiteLLM entries. It describes its container with an
`EngineDescription` and subclasses `EngineServer`, which builds the resources and exposes the outputs
every engine shares, so the gateway and the stack program treat all engines alike.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlparse

import pulumi
import pulumi_docker as docker

from . import container, model_pull
from .model_entry import LiteLLMModelEntry

__all__ = ["EngineDescription", "EngineServer"]


@dataclass(frozen=True)
class EngineDescription:
    """What one engine container is made of; the engine module fills it from its own facts and args."""

    component: str
    """The engine, as the `llmstack.component` label says it: `vllm`, `ollama`, ..."""
    container_name: str
    """Docker name of the container (scoped by the stack's prefix)."""
    hostname: str
    """Network alias of the container: the host name in the engine's `api_base`."""
    image: str
    """Image reference (the pinned tag unless overridden)."""
    command: Sequence[str]
    """Arguments after the image's entrypoint."""
    health_test: Sequence[str]
    """A healthcheck test that works inside the image."""
    health_start_period: str
    """How long the first start may take before failed healthchecks count (a Go duration)."""
    data_path: str
    """Where the retained volume (model cache or store) is mounted."""
    data_volume: str
    """Docker name of the retained volume."""
    data_resource: str
    """Suffix of the volume's resource name: `<component resource>-<data_resource>`."""
    plain_envs: Mapping[str, str] = field(default_factory=dict)
    """Envs without secrets."""
    key_env: Optional[str] = None
    """The env the engine reads its API key from; None for an engine without authentication (Ollama)."""
    api_key: Optional[pulumi.Input[str]] = None
    """The key to require; generated and kept in state when None (and key_env is set)."""
    hf_token: Optional[pulumi.Input[str]] = None
    """Hugging Face token, passed as the secret env HF_TOKEN when set."""
    gpus: Optional[Sequence[str]] = None
    """GPU device ids or `["all"]`; None or empty: CPU only."""
    ipc_mode: Optional[str] = None
    """Docker IPC mode (`host` for tensor-parallel vLLM)."""


class EngineServer(pulumi.ComponentResource):
    """What every model server exposes to the gateway and to the program that places it."""

    api_base: pulumi.Output[str]
    """Where the gateway reaches the engine on the stack's network, e.g. `http://qwen3:8000/v1`."""
    container_name: pulumi.Output[str]
    """Name of the engine's container."""
    model_entries: pulumi.Output[list[LiteLLMModelEntry]]
    """The LiteLLM model entries that reach this server."""
    backend_keys: pulumi.Output[dict[str, str]]
    """Gateway env var name -> this server's API key (secret); empty for an engine without a key."""
    component: str
    """The engine (`vllm`, `ollama`, ...), known when the component is built."""
    hostname: str
    """Network alias of the container, known when the component is built."""
    upstream: str
    """`alias:port` of the engine on the stack's network (what a relay forwards to), known when the component is built."""

    def _build(
        self,
        name: str,
        description: EngineDescription,
        network_name: pulumi.Input[str],
        opts: Optional[pulumi.ResourceOptions],
    ) -> None:
        """Creates the image, the retained volume, the key and the container (`self.container`, `self.data_volume`)."""
        self._container_name = description.container_name
        self.component = description.component
        self.hostname = description.hostname
        image = container.pinned_image(f"{name}-image", description.image, self)
        self.data_volume = container.retained_volume(
            f"{name}-{description.data_resource}", description.data_volume, description.component, self
        )
        secret_envs: dict[str, pulumi.Input[str]] = {}
        self._api_key: Optional[pulumi.Output[str]] = None
        if description.key_env is not None:
            self._api_key = container.engine_api_key(f"{name}-api-key", description.api_key, self)
            secret_envs[description.key_env] = self._api_key
        if description.hf_token is not None:
            secret_envs["HF_TOKEN"] = description.hf_token
        self.container = container.service_container(
            name,
            parent=self,
            container_name=description.container_name,
            image=image,
            network_name=network_name,
            aliases=[description.hostname],
            command=list(description.command),
            envs=container.container_envs(dict(description.plain_envs), secret_envs),
            health=container.healthcheck(description.health_test, description.health_start_period),
            component=description.component,
            volumes=[docker.ContainerVolumeArgs(volume_name=self.data_volume.name, container_path=description.data_path)],
            gpus=list(description.gpus) if description.gpus else None,
            ipc_mode=description.ipc_mode,
            depends_on=container.depends_on_of(opts),
        )

    def _pull_models(
        self,
        name: str,
        models: Sequence[str],
        docker_host: str,
        ssh_opts: Sequence[str],
        pull_argv: Callable[[str], list[str]],
        remove_argv: Callable[[str], list[str]],
    ) -> None:
        """One pull resource per model into the built container (`self.pulls`), for engines that download nothing by themselves."""
        self.pulls = model_pull.pull_models(
            name,
            models,
            docker_host=docker_host,
            ssh_opts=ssh_opts,
            container=self.container,
            container_name=self._container_name,
            model_store=self.data_volume,
            pull_argv=pull_argv,
            remove_argv=remove_argv,
            parent=self,
        )

    def _expose(
        self, api_base: str, entries: list[LiteLLMModelEntry], key_env: Optional[str], **own: pulumi.Output[Any]
    ) -> None:
        """Sets the shared outputs (plus the engine's `own` ones) and registers them; call last in `__init__`."""
        self.upstream = urlparse(api_base).netloc
        self.api_base = pulumi.Output.from_input(api_base)
        self.container_name = self.container.name
        self.model_entries = pulumi.Output.from_input(entries)
        if self._api_key is not None and key_env is not None:
            self.backend_keys = self._api_key.apply(lambda key: {key_env: key})
        else:
            self.backend_keys = pulumi.Output.from_input({})
        for attribute, value in own.items():
            setattr(self, attribute, value)
        self.register_outputs(
            {
                "api_base": self.api_base,
                "container_name": self.container_name,
                "model_entries": self.model_entries,
                "backend_keys": self.backend_keys,
                **own,
            }
        )
