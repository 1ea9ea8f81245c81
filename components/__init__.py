"""llmstack's reusable Pulumi components: model servers and the LiteLLM gateway on Docker hosts."""

from .litellm import LiteLLMProxy, LiteLLMProxyArgs
from .litellm_config import GatewaySettings, RateLimit
from .model_entry import LiteLLMModelEntry
from .vllm import VllmServer, VllmServerArgs

__all__ = [
    "GatewaySettings",
    "LiteLLMModelEntry",
    "LiteLLMProxy",
    "LiteLLMProxyArgs",
    "RateLimit",
    "VllmServer",
    "VllmServerArgs",
]
