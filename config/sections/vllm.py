"""The `llmstack:vllm` section: one VllmServer per entry, started after the services sharing its GPUs."""

from collections.abc import Iterator
from typing import Annotated, Any, Literal, Optional

from pydantic import BeforeValidator, Field, field_validator

from components import vllm as vllm_facts
from components.vllm import VllmServer, VllmServerArgs

from .. import credentials, engine_ids, gpu_ids, vllm_args
from ..vllm_context import QWEN3_YARN_EXAMPLE, context_issues
from ..deployment import DeployContext, EngineDeployment
from ..errors import ConfigIssue, key_path
from ..registry import SectionSpec, register
from ..schema import Duration, Engine, GpuSelection, ModelName, StackConfig, problem
from . import image_and_gpus

# vLLM flags that may be given several times (argparse `append`); any other flag given twice is a mistake.
REPEATABLE_FLAGS = ("--middleware",)


def _utilization(value: Any) -> Any:
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) <= 1:
        raise problem(f"{value!r} is not a fraction of the card", "write a number in (0, 1] such as 0.85, or auto")
    return float(value)


class Vllm(Engine):
    name: ModelName
    model: str = Field(min_length=1)
    gpus: GpuSelection = ["all"]
    gpu_memory_utilization: Annotated[Optional[float | Literal["auto"]], BeforeValidator(_utilization)] = None
    tensor_parallel_size: Optional[int] = Field(default=None, ge=1)
    max_model_len: Optional[int] = Field(default=None, ge=1)
    reasoning_parser: Optional[str] = None
    tool_call_parser: Optional[str] = None
    hf_overrides: Optional[dict[str, Any]] = None
    extra_args: list[str] = Field(default_factory=list)
    health_start_period: Optional[Duration] = None

    @field_validator("gpus")
    @classmethod
    def _gpus_or_all(cls, value: Optional[list[str]]) -> list[str]:
        return value or ["all"]  # vLLM needs a GPU: `gpus:` left empty means all of them

    def model_names(self) -> list[tuple[str, tuple]]:
        return [(self.name, ("name",))]

    def base_hostname(self) -> str:
        return self.name

    def gateway_key_env(self) -> Optional[str]:
        return vllm_facts.gateway_key_env(self.hostname())


def value_issues(entry: Vllm, loc: tuple, stack: StackConfig) -> Iterator[ConfigIssue]:
    """The model id and parser names in vLLM's grammar, no credential in overrides or flags, a tensor-parallel size that fits."""
    yield from engine_ids.model_issue((*loc, "model"), entry.model, engine_ids.hf_model_problem(entry.model, local_path=True), engine_ids.HF_FIX)
    yield from engine_ids.parser_issue((*loc, "reasoningParser"), entry.reasoning_parser)
    yield from engine_ids.parser_issue((*loc, "toolCallParser"), entry.tool_call_parser)
    yield from credentials.named_secret_issues(entry.hf_overrides or {}, (*loc, "hfOverrides"))
    yield from credentials.secret_flag_issues(entry.extra_args, (*loc, "extraArgs"))
    yield from gpu_ids.tensor_parallel_issues(entry, loc, stack)


def flag_issues(entry: Vllm, loc: tuple, stack: StackConfig) -> Iterator[ConfigIssue]:
    """Removed, managed and repeated flags in extraArgs, read as vLLM reads them (`--max_model_len`, `-tp`,
    `--api-key=...`), and auto tool choice without a parser; a message never echoes a flag's value (it may be a secret)."""
    where = key_path((*loc, "extraArgs"))
    yield from vllm_args.extra_args_issues(loc[1], entry.extra_args)
    for flag in vllm_args.canonical(vllm_facts.removed_flags_in(entry.extra_args)):
        fix = "remove it"
        if flag.startswith("--rope-scaling"):
            fix = f"use hfOverrides with the model's rope_theta and the long length, e.g. for Qwen3 {QWEN3_YARN_EXAMPLE}"
        elif flag.startswith("--enable-reasoning"):
            fix = "remove it: reasoningParser alone turns reasoning on"
        yield ConfigIssue(where, f"{flag} was removed from vLLM and stops it at start", fix)
    for flag in vllm_args.canonical(vllm_facts.managed_flags_in(entry.extra_args)):
        if flag not in vllm_args.SECRET_FLAGS:  # reported by the credential check, with how to pass a secret
            yield ConfigIssue(where, f"{flag} is set from the typed keys", "use the matching key (e.g. maxModelLen) instead")
    flags = vllm_args.canonical(entry.extra_args)
    for flag in sorted({f for f in flags if flags.count(f) > 1 and f not in REPEATABLE_FLAGS}):
        yield ConfigIssue(where, f"{flag} is given {flags.count(flag)} times (vLLM silently keeps only the last)", f"keep one {flag}")
    if entry.tool_call_parser is None and "--enable-auto-tool-choice" in flags:
        yield ConfigIssue(where, "auto tool choice needs a tool-call parser", "set toolCallParser instead")


def server_args(entry: Vllm, context: DeployContext) -> VllmServerArgs:
    """VllmServer args for one `llmstack:vllm` entry."""
    args: VllmServerArgs = {
        "served_model_name": entry.name,
        "model": entry.model,
        "network_name": context.site(entry).network.name,
        "extra_args": list(entry.extra_args),
    }
    if context.name_prefix:
        args["name_prefix"] = context.name_prefix
    if entry.replica:
        args["container_name"] = entry.hostname()
    args.update(image_and_gpus(entry))  # type: ignore[typeddict-item]
    optional = {
        # `auto` is sized by the GPU plan.
        "gpu_memory_utilization": context.gpu_plan.utilizations.get(entry.hostname()),
        "tensor_parallel_size": entry.tensor_parallel_size,
        "max_model_len": entry.max_model_len,
        "reasoning_parser": entry.reasoning_parser,
        "tool_call_parser": entry.tool_call_parser,
        "hf_overrides": entry.hf_overrides,
        "health_start_period": entry.health_start_period,
        "hf_token": context.hf_token,
    }
    args.update({k: v for k, v in optional.items() if v is not None})  # type: ignore[typeddict-item]
    return args


def deploy(entry: Vllm, context: DeployContext) -> EngineDeployment:
    """A VllmServer for one entry; it starts after the services sharing its GPUs (it measures free memory at start)."""
    return context.place(entry, lambda opts: VllmServer(entry.hostname(), server_args(entry, context), opts=opts), measures_free_memory=True)


SECTION = register(
    SectionSpec(
        key="vllm",
        model=Vllm,
        deploy=deploy,
        many=True,
        measures_free_memory=True,
        checks=(value_issues, flag_issues, context_issues),
    )
)
