"""One module per engine section of the stack file: it turns that section into components on their sites."""

from dataclasses import dataclass, field

import pulumi

from components.model_entry import LiteLLMModelEntry


@dataclass
class EngineDeployment:
    """What the gateway and the GPU planner need from one deployed engine component."""

    component: pulumi.ComponentResource
    model_entries: pulumi.Output[list[LiteLLMModelEntry]]
    backend_keys: pulumi.Output[dict[str, str]]
    gpu_ids: list[str] = field(default_factory=list)
    host: str = ""
