"""One module per engine section of the stack file: it turns that section into components on their sites."""

from dataclasses import dataclass, field

import pulumi

from components.model_entry import LiteLLMModelEntry

from ..schema import EngineSection, StackConfig


@dataclass
class EngineDeployment:
    """What the gateway and the GPU planner need from one deployed engine component."""

    component: pulumi.ComponentResource
    model_entries: pulumi.Output[list[LiteLLMModelEntry]]
    backend_keys: pulumi.Output[dict[str, str]]
    gpu_ids: list[str] = field(default_factory=list)
    host: str = ""


def hf_token(stack: StackConfig) -> dict[str, pulumi.Output[str]]:
    """`{"hf_token": <secret>}` when the stack sets llmstack:hfToken, for engines that download from Hugging Face."""
    if stack.hf_token is None:
        return {}
    return {"hf_token": pulumi.Output.secret(stack.hf_token.plaintext or "")}


def placement(section: EngineSection) -> dict[str, object]:
    """The GPU ids and image override of an engine section, where set."""
    found: dict[str, object] = {}
    if section.gpus:
        found["gpus"] = list(section.gpus)
    if section.image:
        found["image"] = section.image
    return found
