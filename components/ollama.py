"""OllamaServer: one Ollama server for chat and vision models, each model pulled during `pulumi up`."""

import re
from collections.abc import Sequence
from typing import NotRequired, Optional, TypedDict

import pulumi

from . import container
from .engine import EngineDescription, EngineServer
from .model_entry import LiteLLMModelEntry, require_unique_names

__all__ = ["OllamaModel", "OllamaServer", "OllamaServerArgs"]

# Facts about the ollama/ollama image (docs/engine-facts.md); upgrading the image is one edit here.
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
# Ollama reads its settings from OLLAMA_* envs.
SETTING_PATTERN = r"OLLAMA_[A-Z0-9_]+"
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
    """Network alias (the host in `api_base`), and the container name after `name_prefix` (default `ollama`)."""
    name_prefix: NotRequired[str]
    """Prefix of the container and volume names (e.g. the stack name: `prod-ollama`); the network alias stays unprefixed."""
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


def is_setting(name: str) -> bool:
    """Whether an env name is an Ollama setting (`OLLAMA_` and upper-case letters, digits, `_`)."""
    return re.fullmatch(SETTING_PATTERN, name) is not None


def ollama_settings(env: Optional[dict[str, str]]) -> dict[str, str]:
    """The container's envs: only Ollama settings are accepted."""
    bad = sorted(k for k in env or {} if not is_setting(k))
    if bad:
        raise ValueError(f"env {bad} are not Ollama settings: use OLLAMA_* variables")
    return dict(env or {})


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


class OllamaServer(EngineServer):
    """An Ollama server with its models pulled before `pulumi up` returns.

    Ollama has no API key: it publishes no port and is reachable only on the stack's internal
    Docker network, through the gateway (its `backend_keys` are empty)."""

    pulled_models: pulumi.Output[list[str]]
    """The Ollama tags pulled into the server, sorted."""

    def __init__(self, name: str, args: OllamaServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:OllamaServer", name, {}, opts)
        models = list(args["models"])
        require_unique_names("OllamaServer", models)  # type: ignore[arg-type]
        hostname = args.get("container_name") or CONTAINER_NAME
        container_name = container.docker_name(args.get("name_prefix"), hostname)
        description = EngineDescription(
            component="ollama",
            container_name=container_name,
            hostname=hostname,
            image=args.get("image") or IMAGE,
            # The image's entrypoint is `ollama` and its default command `serve`.
            command=["serve"],
            health_test=HEALTH_TEST,
            health_start_period=args.get("health_start_period") or HEALTH_START_PERIOD,
            data_path=MODELS_PATH,
            data_volume=args.get("models_volume_name") or f"{container_name}-models",
            data_resource="models",
            plain_envs=ollama_settings(args.get("env")),
            gpus=args.get("gpus"),
        )
        self._build(name, description, args["network_name"], opts)
        tags = sorted({m["model"] for m in models})
        self._pull_models(name, tags, args["docker_host"], args.get("ssh_opts") or [], pull_argv, remove_argv)
        api_base = f"http://{hostname}:{PORT}"
        self._expose(api_base, model_entries(models, api_base), None, pulled_models=pulumi.Output.from_input(tags))
