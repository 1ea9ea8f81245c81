"""The `llmstack:infinity` section: one InfinityServer loading every model listed."""

from collections.abc import Iterator
from typing import Literal, Optional

from pydantic import Field

from components import infinity as infinity_facts
from components.infinity import InfinityServer, InfinityServerArgs

from .. import engine_ids
from ..deployment import DeployContext, EngineDeployment
from ..errors import ConfigIssue
from ..registry import SectionSpec, register
from ..schema import ModelName, Section, SharedEngine, StackConfig
from . import image_and_gpus


class InfinityModel(Section):
    name: ModelName
    model: str = Field(min_length=1)
    mode: Literal["embedding", "rerank"]  # the route; its LiteLLM mode has the same name


class Infinity(SharedEngine):
    models: list[InfinityModel] = Field(min_length=1)

    def base_hostname(self) -> str:
        return infinity_facts.CONTAINER_NAME

    def gateway_key_env(self) -> Optional[str]:
        return infinity_facts.gateway_key_env(self.hostname())


def value_issues(section: Infinity, loc: tuple, stack: StackConfig) -> Iterator[ConfigIssue]:
    """Model ids Infinity reads as Hugging Face repos (or directories in the container)."""
    for i, m in enumerate(section.models):
        problem = engine_ids.hf_model_problem(m.model, local_path=True)
        yield from engine_ids.model_issue((*loc, "models", i, "model"), m.model, problem, engine_ids.HF_FIX)


def server_args(section: Infinity, context: DeployContext) -> InfinityServerArgs:
    """InfinityServer args for the `llmstack:infinity` section on its site."""
    args: InfinityServerArgs = {
        "network_name": context.site(section).network.name,
        "models": [{"name": m.name, "model": m.model, "mode": m.mode} for m in section.models],
    }
    if context.name_prefix:
        args["name_prefix"] = context.name_prefix
    if section.replica:
        args["container_name"] = section.hostname()
    args.update(image_and_gpus(section))  # type: ignore[typeddict-item]
    if context.hf_token is not None:
        args["hf_token"] = context.hf_token
    return args


def deploy(section: Infinity, context: DeployContext) -> EngineDeployment:
    """The InfinityServer of the stack."""
    return context.place(section, lambda opts: InfinityServer(section.hostname(), server_args(section, context), opts=opts))


SECTION = register(
    SectionSpec(key="infinity", model=Infinity, deploy=deploy, hostnames=(infinity_facts.CONTAINER_NAME,), checks=(value_issues,))
)
