"""VllmServer: one vLLM OpenAI-compatible server for one model, on the GPUs it is given."""

import json
from collections.abc import Sequence
from typing import Any, NotRequired, Optional, TypedDict

import pulumi

from . import container, vllm_cli
from .model_entry import LiteLLMModelEntry, key_env_name

# Facts about the vllm/vllm-openai image (see service-facts.md); upgrading the image is one edit here.
IMAGE = "vllm/vllm-openai:v0.31.0"
PORT = 8000
CACHE_PATH = "/root/.cache/huggingface"
HEALTH_TEST = ["CMD", "curl", "-fsS", f"http://localhost:{PORT}/health"]
# A first start downloads the weights (30 GB for a 30B FP8 model) and compiles kernels.
HEALTH_START_PERIOD = "60m"
LITELLM_PREFIX = "hosted_vllm/"
# Flags vLLM removed between 0.10 and 0.18; passing one stops the server at start.
REMOVED_FLAGS = ("--enable-reasoning", "--swap-space", "--disable-log-requests", "--rope-scaling")
# Flags VllmServer sets from its typed args; extra_args must not set them again.
MANAGED_FLAGS = (
    "--served-model-name",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--tensor-parallel-size",
    "--reasoning-parser",
    "--enable-auto-tool-choice",
    "--tool-call-parser",
    "--hf-overrides",
    "--api-key",
    "--port",
    "--host",
)


class VllmServerArgs(TypedDict):
    """Inputs of a VllmServer."""

    served_model_name: str
    """The model name clients use; also the container name and its network alias."""
    model: str
    """Hugging Face model id (or a path in the cache volume), e.g. `Qwen/Qwen3-30B-A3B-FP8`."""
    network_name: pulumi.Input[str]
    """Docker network the gateway shares with this server."""
    gpus: NotRequired[list[str]]
    """GPU device ids (`["0"]`, `["0", "1"]`) or `["all"]`; several ids set the tensor-parallel size."""
    gpu_memory_utilization: NotRequired[float]
    """Fraction of each card's total memory this server takes (vLLM's default is 0.92)."""
    tensor_parallel_size: NotRequired[int]
    """Override of the tensor-parallel size (default: the number of device ids)."""
    max_model_len: NotRequired[int]
    """Context length in tokens."""
    reasoning_parser: NotRequired[str]
    """vLLM reasoning parser, e.g. `qwen3`."""
    tool_call_parser: NotRequired[str]
    """vLLM tool-call parser, e.g. `hermes`; turns on auto tool choice."""
    hf_overrides: NotRequired[dict[str, Any]]
    """Model config overrides (e.g. yarn rope parameters), passed as `--hf-overrides` JSON."""
    extra_args: NotRequired[list[str]]
    """More `vllm serve` flags, appended last."""
    image: NotRequired[str]
    """Image override (default: the pinned vllm/vllm-openai tag)."""
    hf_token: NotRequired[pulumi.Input[str]]
    """Hugging Face token for gated models (secret)."""
    api_key: NotRequired[pulumi.Input[str]]
    """Key vLLM requires (secret); generated and kept in state when absent."""
    health_start_period: NotRequired[str]
    """How long the first start (download, load, compile) may take before failed healthchecks count, e.g. `60m`."""
    cache_volume_name: NotRequired[str]
    """Docker volume for the Hugging Face cache (default `<served_model_name>-hf-cache`); it is retained on destroy."""


def removed_flags_in(args: Sequence[str]) -> list[str]:
    """The flags among `args` that current vLLM rejects."""
    return [a for a in args if vllm_cli.flag_name(a) in REMOVED_FLAGS]


def managed_flags_in(args: Sequence[str]) -> list[str]:
    """The flags among `args` that VllmServer already sets from its typed args."""
    return [a for a in args if vllm_cli.flag_name(a) in MANAGED_FLAGS]


def tensor_parallel_size(gpus: Optional[Sequence[str]], override: Optional[int] = None) -> Optional[int]:
    """The tensor-parallel size: the override, else one rank per listed device id (unknown for `all`)."""
    if override:
        return int(override)
    if gpus and list(gpus) != [container.ALL_GPUS] and len(gpus) > 1:
        return len(gpus)
    return None


def serve_command(args: VllmServerArgs) -> list[str]:
    """The `vllm serve` arguments (the image's entrypoint is `vllm serve`)."""
    extra = list(args.get("extra_args") or [])
    bad = removed_flags_in(extra) + managed_flags_in(extra)
    if bad:
        raise ValueError(f"extra_args must not contain {bad}: removed from vLLM or set from typed args")
    command = [args["model"], "--served-model-name", args["served_model_name"], "--port", str(PORT)]
    if args.get("max_model_len"):
        command += ["--max-model-len", str(int(args["max_model_len"]))]
    if args.get("gpu_memory_utilization") is not None:
        command += ["--gpu-memory-utilization", f"{float(args['gpu_memory_utilization']):g}"]
    tp = tensor_parallel_size(args.get("gpus"), args.get("tensor_parallel_size"))
    if tp:
        command += ["--tensor-parallel-size", str(tp)]
    if args.get("reasoning_parser"):
        command += ["--reasoning-parser", args["reasoning_parser"]]
    if args.get("tool_call_parser"):
        command += ["--enable-auto-tool-choice", "--tool-call-parser", args["tool_call_parser"]]
    if args.get("hf_overrides"):
        command += ["--hf-overrides", json.dumps(args["hf_overrides"], sort_keys=True, separators=(",", ":"))]
    return command + extra


class VllmServer(pulumi.ComponentResource):
    """A vLLM server for one model: image, Hugging Face cache volume, API key and a container that is healthy when `pulumi up` returns."""

    api_base: pulumi.Output[str]
    """OpenAI-compatible base URL on the stack's network, e.g. `http://qwen3:8000/v1`."""
    served_model_name: pulumi.Output[str]
    """The model name clients use."""
    container_name: pulumi.Output[str]
    """Name of the vLLM container."""
    model_entries: pulumi.Output[list[LiteLLMModelEntry]]
    """The LiteLLM model entries that reach this server."""
    backend_keys: pulumi.Output[dict[str, str]]
    """Gateway env var name -> this server's API key (secret)."""

    def __init__(self, name: str, args: VllmServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:VllmServer", name, {}, opts)
        served = args["served_model_name"]
        command = serve_command(args)
        image = container.pinned_image(f"{name}-image", args.get("image") or IMAGE, self)
        cache = container.retained_volume(
            f"{name}-hf-cache", args.get("cache_volume_name") or f"{served}-hf-cache", "vllm", self
        )
        api_key = container.engine_api_key(f"{name}-api-key", args.get("api_key"), self)
        secret_envs = container.engine_secret_envs("VLLM_API_KEY", api_key, args.get("hf_token"))
        self.container = container.service_container(
            name,
            parent=self,
            container_name=served,
            image=image,
            network_name=args["network_name"],
            aliases=[served],
            command=command,
            envs=container.container_envs({"HF_HOME": CACHE_PATH}, secret_envs),
            health=container.healthcheck(HEALTH_TEST, args.get("health_start_period") or HEALTH_START_PERIOD),
            component="vllm",
            volumes=[container.docker.ContainerVolumeArgs(volume_name=cache.name, container_path=CACHE_PATH)],
            gpus=args.get("gpus"),
            # Tensor-parallel workers share memory through /dev/shm; host IPC is what vLLM documents.
            ipc_mode="host",
            depends_on=container.depends_on_of(opts),
        )
        entry: LiteLLMModelEntry = {
            "model_name": served,
            "model": LITELLM_PREFIX + served,
            "api_base": f"http://{served}:{PORT}/v1",
            "mode": "chat",
            "api_key_env": key_env_name("vllm", served),
        }
        if args.get("tool_call_parser"):
            entry["supports_function_calling"] = True
        self.api_base = pulumi.Output.from_input(entry["api_base"])
        self.served_model_name = pulumi.Output.from_input(served)
        self.container_name = self.container.name
        self.model_entries = pulumi.Output.from_input([entry])
        self.backend_keys = pulumi.Output.secret(api_key.apply(lambda key: {entry["api_key_env"]: key}))
        self.register_outputs(
            {
                "api_base": self.api_base,
                "served_model_name": self.served_model_name,
                "container_name": self.container_name,
                "model_entries": self.model_entries,
                "backend_keys": self.backend_keys,
            }
        )
