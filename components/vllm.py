"""VllmServer: one vLLM OpenAI-compatible server for one model, on the GPUs it is given."""

import json
from collections.abc import Sequence
from typing import Any, NotRequired, Optional, TypedDict

import pulumi

from . import container, vllm_cli
from .engine import EngineDescription, EngineServer
from .model_entry import LiteLLMModelEntry, key_env_name

__all__ = ["VllmServer", "VllmServerArgs"]

# Facts about the vllm/vllm-openai image (docs/engine-facts.md); upgrading the image is one edit here.
IMAGE = "vllm/vllm-openai:v0.31.0"
PORT = 8000
CACHE_PATH = "/root/.cache/huggingface"
HEALTH_TEST = ["CMD", "curl", "-fsS", f"http://localhost:{PORT}/health"]
# A first start downloads the weights (30 GB for a 30B FP8 model) and compiles kernels.
HEALTH_START_PERIOD = "60m"
LITELLM_PREFIX = "hosted_vllm/"
# vLLM reads its key from this env when `--api-key` is absent (checked with vLLM 0.31.0's own parser).
CONTAINER_KEY_ENV = "VLLM_API_KEY"
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
    """The model name clients use; also the network alias, and the container name after `name_prefix`."""
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
    """Docker volume for the Hugging Face cache (default `<container name>-hf-cache`); it is retained on destroy."""
    name_prefix: NotRequired[str]
    """Prefix of the container and volume names (e.g. the stack name: `prod-qwen3`); the network alias stays the model name."""
    container_name: NotRequired[str]
    """Network alias (the host in `api_base`), and the container name after `name_prefix` (default: the served
    model name); another name for each replica of one model on one network, e.g. `qwen3-gpu-02`."""


def gateway_key_env(hostname: str) -> str:
    """The gateway env var holding the key of the server with this network alias (by default the served model
    name), e.g. `VLLM_QWEN3_API_KEY`."""
    return key_env_name("vllm", hostname)


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


class VllmServer(EngineServer):
    """A vLLM server for one model: image, Hugging Face cache volume, API key and a container that is healthy when `pulumi up` returns."""

    served_model_name: pulumi.Output[str]
    """The model name clients use."""

    def __init__(self, name: str, args: VllmServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:VllmServer", name, {}, opts)
        served = args["served_model_name"]
        hostname = args.get("container_name") or served
        container_name = container.docker_name(args.get("name_prefix"), hostname)
        description = EngineDescription(
            component="vllm",
            container_name=container_name,
            hostname=hostname,
            image=args.get("image") or IMAGE,
            command=serve_command(args),
            health_test=HEALTH_TEST,
            health_start_period=args.get("health_start_period") or HEALTH_START_PERIOD,
            data_path=CACHE_PATH,
            data_volume=args.get("cache_volume_name") or f"{container_name}-hf-cache",
            data_resource="hf-cache",
            plain_envs={"HF_HOME": CACHE_PATH},
            key_env=CONTAINER_KEY_ENV,
            api_key=args.get("api_key"),
            hf_token=args.get("hf_token"),
            gpus=args.get("gpus"),
            # Tensor-parallel workers share memory through /dev/shm; host IPC is what vLLM documents.
            ipc_mode="host",
        )
        self._build(name, description, args["network_name"], opts)
        key_env = gateway_key_env(hostname)
        entry: LiteLLMModelEntry = {
            "model_name": served,
            "model": LITELLM_PREFIX + served,
            "api_base": f"http://{hostname}:{PORT}/v1",
            "mode": "chat",
            "api_key_env": key_env,
        }
        if args.get("tool_call_parser"):
            entry["supports_function_calling"] = True
        self._expose(entry["api_base"], [entry], key_env, served_model_name=pulumi.Output.from_input(served))
