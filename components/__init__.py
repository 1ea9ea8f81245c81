"""llmstack's reusable Pulumi components: model servers and the LiteLLM gateway on Docker hosts."""

from .infinity import InfinityModel, InfinityServer, InfinityServerArgs
from .litellm import LiteLLMProxy, LiteLLMProxyArgs
from .litellm_config import GatewaySettings, RateLimit
from .model_entry import LiteLLMModelEntry
from .model_pull import ModelPullArgs
from .ollama import OllamaModel, OllamaServer, OllamaServerArgs
from .speaches import SpeachesModel, SpeachesServer, SpeachesServerArgs
from .vllm import VllmServer, VllmServerArgs

__all__ = [
    "GatewaySettings",
    "InfinityModel",
    "InfinityServer",
    "InfinityServerArgs",
    "LiteLLMModelEntry",
    "LiteLLMProxy",
    "LiteLLMProxyArgs",
    "ModelPullArgs",
    "OllamaModel",
    "OllamaServer",
    "OllamaServerArgs",
    "RateLimit",
    "SpeachesModel",
    "SpeachesServer",
    "SpeachesServerArgs",
    "VllmServer",
    "VllmServerArgs",
]
