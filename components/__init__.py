"""llmstack's reusable Pulumi components: model servers and the LiteLLM gateway on Docker hosts."""

from .alert_rules import AlertThresholds
from .dashboards import DashboardModel, GpuReservation
from .gpu_exporter import GpuExporter, GpuExporterArgs
from .grafana import Grafana, GrafanaArgs
from .infinity import InfinityModel, InfinityServer, InfinityServerArgs
from .litellm import LiteLLMProxy, LiteLLMProxyArgs
from .litellm_config import GatewaySettings, RateLimit
from .model_entry import LiteLLMModelEntry
from .model_pull import ModelPullArgs
from .litellm_metrics import GatewayMetricsSettings, gateway_metrics_settings
from .ollama import OllamaModel, OllamaServer, OllamaServerArgs
from .prometheus import Prometheus, PrometheusArgs
from .scrape_config import ScrapeTarget
from .speaches import SpeachesModel, SpeachesServer, SpeachesServerArgs
from .vllm import VllmServer, VllmServerArgs

__all__ = [
    "AlertThresholds",
    "DashboardModel",
    "GatewayMetricsSettings",
    "GatewaySettings",
    "GpuExporter",
    "GpuExporterArgs",
    "GpuReservation",
    "Grafana",
    "GrafanaArgs",
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
    "Prometheus",
    "PrometheusArgs",
    "RateLimit",
    "ScrapeTarget",
    "SpeachesModel",
    "SpeachesServer",
    "SpeachesServerArgs",
    "VllmServer",
    "VllmServerArgs",
    "gateway_metrics_settings",
]
