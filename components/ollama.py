"""OllamaServer: one Ollama server for chat and vision models, each model pulled during `pulumi up`."""

from collections.abc import Sequence
from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_docker as docker

from . import container
from .model_entry import LiteLLMModelEntry, require_unique_names
from .model_pull import ModelPullArgs, pull_command, pull_resource_names

# Facts about the ollama/ollama image (see service-facts.md); upgrading the image is one edit here.
IMAGE = "ollama/ollama:0.35.1"
PORT = 11434
CONTAINER_NAME = "ollama"
MODELS_PATH = "/root/.ollama"
# The image has no curl; `ollama list` fails while the server is down (`ollama --version` does not).
# Exec form has no shell, so the test is the bare command: its exit status is the verdict.
HEALTH_TEST = ["CMD", "ollama", "list"]
# Nothing is downloaded at start: models are pulled afterwards, one resource each.
HEALTH_START_PERIOD = "60s"
LITELLM_PREFIX = "ollama_chat/"
ENV_PREFIX = "OLLAMA_"
# `ollama rm` of a tag the server does not have is success here: the model is gone either way.
REMOVE_SCRIPT = (
    'out=$(ollama rm "$1" 2>&1) && { printf "%s\\n" "$out"; exit 0; }; '
    'case "$out" in *"not found"*) echo "$1 was not on the server"; exit 0;; esac; '
    'printf "%s\\n" "$out" >&2; exit 1'
)


class OllamaModel(TypedDict):
    """One model served by Ollama."""

    name: str
    """The model name clients use (unique across the stack)."""
    model: str
    """Ollama tag, e.g. `qwen2.5vl:7b-q4_K_M`; pulled during `pulumi up`."""
    max_tokens: NotRequired[int]
    """Largest completion in tokens (LiteLLM `model_info.max_tokens`)."""


class OllamaServerArgs(TypedDict):
    """Inputs of an OllamaServer."""

    network_name: pulumi.Input[str]
    """Docker network the gateway shares with this server."""
    docker_host: str
    """URL of the Docker host the container runs on (the provider's host): the pulls run there."""
    models: list[OllamaModel]
    """The models to pull and serve."""
    ssh_opts: NotRequired[list[str]]
    """ssh options of an ssh:// Docker host (the provider's ssh_opts)."""
    gpus: NotRequired[list[str]]
    """GPU device ids or `["all"]`; absent or empty: CPU only."""
    env: NotRequired[dict[str, str]]
    """Ollama settings: OLLAMA_KEEP_ALIVE, OLLAMA_KV_CACHE_TYPE, OLLAMA_FLASH_ATTENTION, OLLAMA_NUM_PARALLEL, ..."""
    image: NotRequired[str]
    """Image override (default: the pinned ollama/ollama tag)."""
    container_name: NotRequired[str]
    """Container name and network alias (default `ollama`)."""
    models_volume_name: NotRequired[str]
    """Docker volume for the model store (default `<container_name>-models`); it is retained on destroy."""
    health_start_period: NotRequired[str]
    """Grace period before failed healthchecks count, e.g. `60s`."""


def pull_argv(tag: str) -> list[str]:
    """What fetches a model in the container: the CLI talks to the server it runs next to."""
    return ["ollama", "pull", tag]


def remove_argv(tag: str) -> list[str]:
    """What removes a model in the container; an absent tag is not an error."""
    return ["sh", "-c", REMOVE_SCRIPT, "sh", tag]


def ollama_envs(env: Optional[dict[str, str]]) -> list[pulumi.Input[str]]:
    """The container envs, sorted; only OLLAMA_* settings are accepted."""
    bad = sorted(k for k in env or {} if not k.startswith(ENV_PREFIX))
    if bad:
        raise ValueError(f"env {bad} are not Ollama settings: use OLLAMA_* variables")
    return container.container_envs(dict(env or {}))


def model_entries(models: Sequence[OllamaModel], api_base: str) -> list[LiteLLMModelEntry]:
    """The LiteLLM entries, sorted by name; none carries a key: Ollama has no auth."""
    entries: list[LiteLLMModelEntry] = []
    for m in sorted(models, key=lambda m: m["name"]):
        entry: LiteLLMModelEntry = {
            "model_name": m["name"],
            "model": LITELLM_PREFIX + m["model"],
            "api_base": api_base,
            "mode": "chat",
        }
        if m.get("max_tokens"):
            entry["max_tokens"] = int(m["max_tokens"])
        entries.append(entry)
    return entries


def _check_models(models: Sequence[OllamaModel]) -> None:
    require_unique_names("OllamaServer", models)  # type: ignore[arg-type]



class OllamaServer(pulumi.ComponentResource):
    """An Ollama server with its models pulled before `pulumi up` returns.

    Ollama has no API key: it publishes no port and is reachable only on the stack's internal
    Docker network, through the gateway."""

    api_base: pulumi.Output[str]
    """Base URL on the stack's network, e.g. `http://ollama:11434` (LiteLLM's ollama_chat adds the route)."""
    container_name: pulumi.Output[str]
    """Name of the Ollama container."""
    model_entries: pulumi.Output[list[LiteLLMModelEntry]]
    """The LiteLLM model entries that reach this server."""
    pulled_models: pulumi.Output[list[str]]
    """The Ollama tags pulled into the server, sorted."""

    def __init__(self, name: str, args: OllamaServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:OllamaServer", name, {}, opts)
        models = list(args["models"])
        _check_models(models)
        container_name = args.get("container_name") or CONTAINER_NAME
        envs = ollama_envs(args.get("env"))
        image = container.pinned_image(f"{name}-image", args.get("image") or IMAGE, self)
        store = container.retained_volume(
            f"{name}-models", args.get("models_volume_name") or f"{container_name}-models", "ollama", self
        )
        self.container = container.service_container(
            name,
            parent=self,
            container_name=container_name,
            image=image,
            network_name=args["network_name"],
            aliases=[container_name],
            # The image's entrypoint is `ollama` and its default command `serve`.
            command=["serve"],
            envs=envs,
            health=container.healthcheck(HEALTH_TEST, args.get("health_start_period") or HEALTH_START_PERIOD),
            component="ollama",
            volumes=[docker.ContainerVolumeArgs(volume_name=store.name, container_path=MODELS_PATH)],
            gpus=args.get("gpus"),
            depends_on=container.depends_on_of(opts),
        )
        tags = sorted({m["model"] for m in models})
        self.pulls = []
        for tag, resource_name in pull_resource_names(name, tags).items():
            pull: ModelPullArgs = {
                "docker_host": args["docker_host"],
                "ssh_opts": list(args.get("ssh_opts") or []),
                "container_name": container_name,
                "container_id": self.container.id,
                "model": tag,
                "pull": pull_argv(tag),
                "remove": remove_argv(tag),
            }
            self.pulls.append(pull_command(resource_name, pull, parent=self, container=self.container, model_store=store))
        api_base = f"http://{container_name}:{PORT}"
        self.api_base = pulumi.Output.from_input(api_base)
        self.container_name = self.container.name
        self.model_entries = pulumi.Output.from_input(model_entries(models, api_base))
        self.pulled_models = pulumi.Output.from_input(tags)
        self.register_outputs(
            {
                "api_base": self.api_base,
                "container_name": self.container_name,
                "model_entries": self.model_entries,
                "pulled_models": self.pulled_models,
            }
        )
