"""InfinityServer: one Infinity server for embedding and rerank models, loaded at start."""

from collections.abc import Sequence
from typing import NotRequired, Optional, TypedDict

import pulumi

from . import container
from .engine import EngineDescription, EngineServer
from .model_entry import LiteLLMModelEntry, ROUTE_MODES, engine_entries, key_env_name, require_unique_names

__all__ = ["InfinityModel", "InfinityServer", "InfinityServerArgs"]

# Facts about the michaelf34/infinity image (docs/engine-facts.md); upgrading the image is one edit here.
GPU_IMAGE = "michaelf34/infinity:0.0.77"
CPU_IMAGE = "michaelf34/infinity:0.0.77-cpu"
PORT = 7997
CONTAINER_NAME = "infinity"
CACHE_PATH = "/app/.cache"
HF_HOME = f"{CACHE_PATH}/huggingface"
# /health needs no key and answers only once every model is downloaded and loaded.
HEALTH_TEST = ["CMD", "curl", "-fsS", f"http://localhost:{PORT}/health"]
# A first start downloads every model from Hugging Face before serving.
HEALTH_START_PERIOD = "30m"
# Infinity reads its key from this env (or `--api-key`); without it every route is open.
CONTAINER_KEY_ENV = "INFINITY_API_KEY"
PLAIN_ENVS = {"DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "HF_HOME": HF_HOME}
LITELLM_PREFIX = "infinity/"
MODES = (ROUTE_MODES["embedding"], ROUTE_MODES["rerank"])


class InfinityModel(TypedDict):
    """One model served by Infinity."""

    name: str
    """The model name clients use (unique across the stack)."""
    model: str
    """Hugging Face model id, e.g. `BAAI/bge-reranker-v2-m3`; Infinity serves it under this id."""
    mode: str
    """The route it serves: `/embeddings` or `/rerank`."""


class InfinityServerArgs(TypedDict):
    """Inputs of an InfinityServer."""

    network_name: pulumi.Input[str]
    """Docker network the gateway shares with this server."""
    models: list[InfinityModel]
    """The models to load; all are downloaded by the server at its first start."""
    gpus: NotRequired[list[str]]
    """GPU device ids or `["all"]`; absent or empty: CPU only (the `-cpu` image)."""
    image: NotRequired[str]
    """Image override (default: the pinned GPU or CPU tag, by `gpus`)."""
    hf_token: NotRequired[pulumi.Input[str]]
    """Hugging Face token for gated models (secret)."""
    api_key: NotRequired[pulumi.Input[str]]
    """Key Infinity requires (secret); generated and kept in state when absent."""
    container_name: NotRequired[str]
    """Network alias (the host in `api_base`), and the container name after `name_prefix` (default `infinity`)."""
    name_prefix: NotRequired[str]
    """Prefix of the container and volume names (e.g. the stack name: `prod-infinity`); the network alias stays unprefixed."""
    cache_volume_name: NotRequired[str]
    """Docker volume for the model cache (default `<container_name>-cache`); it is retained on destroy."""
    health_start_period: NotRequired[str]
    """How long the first start (downloads, loading) may take before failed healthchecks count, e.g. `30m`."""


def image_for(gpus: Optional[Sequence[str]]) -> str:
    """The pinned image of the variant: CUDA with GPUs, `-cpu` without."""
    return GPU_IMAGE if gpus else CPU_IMAGE


def model_ids(models: Sequence[InfinityModel]) -> list[str]:
    """The distinct Hugging Face ids to load, sorted so the command is the same on every run."""
    return sorted({m["model"] for m in models})


def serve_command(models: Sequence[InfinityModel]) -> list[str]:
    """The `infinity_emb` arguments (the image's entrypoint)."""
    command = ["v2"]
    for model_id in model_ids(models):
        command += ["--model-id", model_id]
    return command + ["--port", str(PORT)]


def gateway_key_env(hostname: str) -> str:
    """The gateway env var holding the key of the server with this network alias: `INFINITY_API_KEY` for the default one."""
    return key_env_name("infinity", "" if hostname == CONTAINER_NAME else hostname)


def model_entries(models: Sequence[InfinityModel], api_base: str, key_env: str) -> list[LiteLLMModelEntry]:
    """The LiteLLM entries, sorted by name."""
    return engine_entries(models, prefix=LITELLM_PREFIX, api_base=api_base, key_env=key_env, modes=MODES)  # type: ignore[arg-type]


class InfinityServer(EngineServer):
    """An Infinity server whose models are downloaded and loaded before `pulumi up` returns (its healthcheck waits for them)."""

    def __init__(self, name: str, args: InfinityServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:InfinityServer", name, {}, opts)
        models = list(args["models"])
        require_unique_names("InfinityServer", models)  # type: ignore[arg-type]
        hostname = args.get("container_name") or CONTAINER_NAME
        container_name = container.docker_name(args.get("name_prefix"), hostname)
        gpus = list(args.get("gpus") or [])
        description = EngineDescription(
            component="infinity",
            container_name=container_name,
            hostname=hostname,
            image=args.get("image") or image_for(gpus),
            command=serve_command(models),
            health_test=HEALTH_TEST,
            health_start_period=args.get("health_start_period") or HEALTH_START_PERIOD,
            data_path=CACHE_PATH,
            data_volume=args.get("cache_volume_name") or f"{container_name}-cache",
            data_resource="cache",
            plain_envs=PLAIN_ENVS,
            key_env=CONTAINER_KEY_ENV,
            api_key=args.get("api_key"),
            hf_token=args.get("hf_token"),
            gpus=gpus,
        )
        self._build(name, description, args["network_name"], opts)
        key_env = gateway_key_env(hostname)
        api_base = f"http://{hostname}:{PORT}"
        self._expose(api_base, model_entries(models, api_base, key_env), key_env)
