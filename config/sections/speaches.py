"""The `llmstack:speaches` section: one SpeachesServer for every model listed."""

from collections.abc import Iterator
from typing import Literal, Optional

from pydantic import Field

from components import speaches as speaches_facts
from components.model_entry import ROUTE_MODES
from components.speaches import SpeachesServer, SpeachesServerArgs

from .. import engine_ids
from ..deployment import DeployContext, EngineDeployment
from ..errors import ConfigIssue
from ..registry import SectionSpec, register
from ..schema import ModelName, Section, SharedEngine, StackConfig
from . import image_and_gpus


class SpeachesModel(Section):
    name: ModelName
    model: str = Field(min_length=1)
    mode: Literal["transcription", "speech"]  # the route; ROUTE_MODES gives LiteLLM's mode


class Speaches(SharedEngine):
    models: list[SpeachesModel] = Field(min_length=1)

    def base_hostname(self) -> str:
        return speaches_facts.CONTAINER_NAME

    def gateway_key_env(self) -> Optional[str]:
        return speaches_facts.gateway_key_env(self.hostname())


def value_issues(section: Speaches, loc: tuple, stack: StackConfig) -> Iterator[ConfigIssue]:
    """Model ids that are Hugging Face repos (the id becomes a path in Speaches' model URL, run through curl), one pull each."""
    for i, m in enumerate(section.models):
        problem = engine_ids.hf_model_problem(m.model, local_path=False)
        problem = problem and problem + " (it goes into Speaches' model URL)"
        yield from engine_ids.model_issue((*loc, "models", i, "model"), m.model, problem, engine_ids.HF_FIX)
    yield from engine_ids.pull_name_issues(loc[0], [m.model for m in section.models], loc)


def server_args(section: Speaches, context: DeployContext) -> SpeachesServerArgs:
    """SpeachesServer args for the `llmstack:speaches` section on its site."""
    site = context.site(section)
    host = context.stack.hosts[site.name]
    args: SpeachesServerArgs = {
        "network_name": site.network.name,
        "docker_host": host.docker,
        "ssh_opts": list(host.ssh_opts),
        "models": [{"name": m.name, "model": m.model, "mode": ROUTE_MODES[m.mode]} for m in section.models],
    }
    if context.name_prefix:
        args["name_prefix"] = context.name_prefix
    if section.replica:
        args["container_name"] = section.hostname()
    args.update(image_and_gpus(section))  # type: ignore[typeddict-item]
    if context.hf_token is not None:
        args["hf_token"] = context.hf_token
    return args


def deploy(section: Speaches, context: DeployContext) -> EngineDeployment:
    """The SpeachesServer of the stack."""
    return context.place(section, lambda opts: SpeachesServer(section.hostname(), server_args(section, context), opts=opts))


SECTION = register(
    SectionSpec(key="speaches", model=Speaches, deploy=deploy, hostnames=(speaches_facts.CONTAINER_NAME,), checks=(value_issues,))
)
