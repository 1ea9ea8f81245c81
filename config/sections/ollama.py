"""The `llmstack:ollama` section: one OllamaServer for every model listed."""

from collections.abc import Iterator
from typing import Any, Optional

from pydantic import Field, field_validator

from components import ollama as ollama_facts
from components.ollama import OllamaModel as OllamaModelArgs
from components.ollama import OllamaServer, OllamaServerArgs

from .. import credentials, engine_env, engine_ids
from ..deployment import DeployContext, EngineDeployment
from ..errors import ConfigIssue
from ..registry import SectionSpec, register
from ..schema import ModelName, Section, SharedEngine, StackConfig, problem
from . import image_and_gpus


class OllamaModel(Section):
    name: ModelName
    model: str = Field(min_length=1)
    max_tokens: Optional[int] = Field(default=None, ge=1)


class Ollama(SharedEngine):
    env: dict[str, str] = Field(default_factory=dict)
    models: list[OllamaModel] = Field(min_length=1)

    @field_validator("env", mode="before")
    @classmethod
    def _env_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v for k, v in value.items()}
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in value if not ollama_facts.is_setting(k))
        if bad:
            raise problem(f"{bad} are not Ollama settings", "use OLLAMA_* variables such as OLLAMA_KEEP_ALIVE")
        return value

    def base_hostname(self) -> str:
        return ollama_facts.CONTAINER_NAME

    def gateway_key_env(self) -> Optional[str]:
        return None  # Ollama has no authentication


def value_issues(section: Ollama, loc: tuple, stack: StackConfig) -> Iterator[ConfigIssue]:
    """Tags in `ollama pull`'s grammar, one pull resource per tag, no setting that moves the server or its store, no credential."""
    for i, m in enumerate(section.models):
        yield from engine_ids.model_issue((*loc, "models", i, "model"), m.model, engine_ids.ollama_tag_problem(m.model), engine_ids.OLLAMA_FIX)
    yield from engine_ids.pull_name_issues(loc[0], [m.model for m in section.models], loc)
    yield from engine_env.ollama_env_issues(section.env, loc)
    yield from credentials.named_secret_issues(section.env, (*loc, "env"))


def model_args(entry: OllamaModel) -> OllamaModelArgs:
    """One `models` entry as OllamaServer takes it."""
    model: OllamaModelArgs = {"name": entry.name, "model": entry.model}
    if entry.max_tokens:
        model["max_tokens"] = entry.max_tokens
    return model


def server_args(section: Ollama, context: DeployContext) -> OllamaServerArgs:
    """OllamaServer args for the `llmstack:ollama` section on its site."""
    site = context.site(section)
    host = context.stack.hosts[site.name]
    args: OllamaServerArgs = {
        "network_name": site.network.name,
        "docker_host": host.docker,
        "ssh_opts": list(host.ssh_opts),
        "models": [model_args(m) for m in section.models],
        "env": dict(section.env),
    }
    if context.name_prefix:
        args["name_prefix"] = context.name_prefix
    if section.replica:
        args["container_name"] = section.hostname()
    args.update(image_and_gpus(section))  # type: ignore[typeddict-item]
    return args


def deploy(section: Ollama, context: DeployContext) -> EngineDeployment:
    """The OllamaServer of the stack."""
    return context.place(section, lambda opts: OllamaServer(section.hostname(), server_args(section, context), opts=opts))


SECTION = register(
    SectionSpec(key="ollama", model=Ollama, deploy=deploy, hostnames=(ollama_facts.CONTAINER_NAME,), checks=(value_issues,))
)
