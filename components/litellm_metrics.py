"""What the LiteLLM gateway needs to export Prometheus metrics on a separate, key-less listener.

Checked against LiteLLM 1.108.7 (litellm/proxy/proxy_cli.py): `--prometheus_metrics_port` has the env
`PROMETHEUS_METRICS_PORT`; with it the CLI starts a separate process that serves /metrics (and /health)
on that port, bound to `--host`, without virtual-key auth, aggregating every worker's samples from
PROMETHEUS_MULTIPROC_DIR (created, or wiped, at start). /metrics stays on the main port too, behind the
master key (`require_auth_for_metrics_endpoint` defaults to true). Samples appear once the `prometheus`
callback is on: `litellm_settings.callbacks: ["prometheus"]`. The callback needs `prometheus_client`
(in the image; from PyPI it comes with the `proxy-runtime` extra, not with `proxy`)."""

from typing import TypedDict

from .litellm import PORT as GATEWAY_PORT

__all__ = ["GatewayMetricsSettings", "gateway_metrics_settings"]

METRICS_PORT = 4001
# The listener answers /metrics with a 307 to /metrics/ (an absolute Location naming its own address, which
# would lead astray through a relay); scrape /metrics/ directly.
METRICS_PATH = "/metrics/"
# One directory per container; the CLI wipes it at start so a restart never double-counts.
MULTIPROC_DIR = "/tmp/litellm_prometheus_multiproc"
METRICS_PORT_ENV = "PROMETHEUS_METRICS_PORT"
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
CALLBACK = "prometheus"


class GatewayMetricsSettings(TypedDict):
    """What to merge into the gateway: its LiteLLM config, its plain envs, and where Prometheus scrapes it."""

    litellm_settings: dict[str, list[str]]
    """Merge into the config's `litellm_settings` (append to an existing `callbacks` list)."""
    envs: dict[str, str]
    """Plain envs of the gateway container (no secret among them)."""
    metrics_port: int
    """The container port of the key-less metrics listener (never published: Prometheus is on the network)."""
    metrics_path: str


def gateway_metrics_settings(metrics_port: int = METRICS_PORT, multiproc_dir: str = MULTIPROC_DIR) -> GatewayMetricsSettings:
    """The settings that turn on LiteLLM's metrics listener; the same for any number of workers."""
    if not 1 <= int(metrics_port) <= 65535 or metrics_port == GATEWAY_PORT:
        raise ValueError(f"gateway metrics port {metrics_port}: use a free port other than the gateway's {GATEWAY_PORT}")
    return {
        "litellm_settings": {"callbacks": [CALLBACK]},
        "envs": {METRICS_PORT_ENV: str(int(metrics_port)), MULTIPROC_DIR_ENV: multiproc_dir},
        "metrics_port": int(metrics_port),
        "metrics_path": METRICS_PATH,
    }
