"""Prometheus alert rules for the stack: a target down, a gateway deployment in outage, a full KV cache or GPU, failures."""

from typing import NotRequired, TypedDict

import yaml

__all__ = ["AlertThresholds"]

RULES_FILE_NAME = "llmstack.yml"
GROUP_NAME = "llmstack"


class AlertThresholds(TypedDict):
    """Tunable limits of the alert rules; every key optional."""

    target_down_for: NotRequired[str]
    """How long a target must stay down before `TargetDown` fires (default 2m)."""
    kv_cache_ratio: NotRequired[float]
    """vLLM KV-cache use above which `KvCacheNearlyFull` counts (default 0.9)."""
    kv_cache_for: NotRequired[str]
    """How long the KV cache must stay above it (default 5m)."""
    gpu_memory_ratio: NotRequired[float]
    """GPU framebuffer use above which `GpuMemoryNearlyFull` counts (default 0.95)."""
    gpu_memory_for: NotRequired[str]
    """Default 5m."""
    failure_ratio: NotRequired[float]
    """Share of failed gateway requests per model above which `GatewayFailureRatioHigh` counts (default 0.05)."""
    failure_for: NotRequired[str]
    """Default 10m."""


DEFAULTS: AlertThresholds = {
    "target_down_for": "2m",
    "kv_cache_ratio": 0.9,
    "kv_cache_for": "5m",
    "gpu_memory_ratio": 0.95,
    "gpu_memory_for": "5m",
    "failure_ratio": 0.05,
    "failure_for": "10m",
}
# litellm_deployment_state: 0 healthy, 1 partial outage, 2 complete outage (LiteLLM 1.108.7's help text);
# its labels are litellm_model_name (the entry's model without provider prefix), model_id, api_base (the
# full URL called), api_provider, and pid when several processes share PROMETHEUS_MULTIPROC_DIR (seen on 1.108.7).
DEPLOYMENT_OUTAGE = 2
# The window over which the gateway's failure ratio is taken.
FAILURE_WINDOW = "5m"


def alert_rules(thresholds: AlertThresholds | None = None) -> list[dict]:
    """The alerting rules, in a fixed order."""
    t = {**DEFAULTS, **(thresholds or {})}
    for key in ("kv_cache_ratio", "gpu_memory_ratio", "failure_ratio"):
        value = t[key]  # type: ignore[literal-required]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
            raise ValueError(f"alert threshold {key} must be a ratio in (0, 1], got {value!r}")
    return [
        {
            "alert": "TargetDown",
            # Scraped engines report `up`; probed ones (Ollama, Speaches) report probe_success.
            "expr": "up == 0 or probe_success == 0",
            "for": t["target_down_for"],
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.engine }} {{ $labels.model }} (replica {{ $labels.replica }}) on {{ $labels.host }} is down",
                "description": "Prometheus cannot scrape or probe {{ $labels.instance }} (job {{ $labels.job }}) "
                f"for {t['target_down_for']}: the container is stopped, unhealthy or unreachable.",
            },
        },
        {
            "alert": "GatewayDeploymentOutage",
            "expr": f"litellm_deployment_state == {DEPLOYMENT_OUTAGE}",
            "for": "1m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "LiteLLM marks deployment {{ $labels.litellm_model_name }} at {{ $labels.api_base }} in outage",
                "description": "The gateway's router sees every recent call to this deployment fail; "
                "requests for the model go to its other deployments or fallbacks, or fail.",
            },
        },
        {
            "alert": "KvCacheNearlyFull",
            "expr": f"vllm:kv_cache_usage_perc > {t['kv_cache_ratio']}",
            "for": t["kv_cache_for"],
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "vLLM {{ $labels.model }} on {{ $labels.host }}: KV cache {{ $value | humanizePercentage }} full",
                "description": f"KV-cache use above {t['kv_cache_ratio']:.0%} for {t['kv_cache_for']}: "
                "requests queue or are preempted. Add a replica, raise gpuMemoryUtilization or lower maxModelLen.",
            },
        },
        {
            "alert": "GpuMemoryNearlyFull",
            "expr": f"DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > {t['gpu_memory_ratio']}",
            "for": t["gpu_memory_for"],
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "GPU {{ $labels.gpu }} on {{ $labels.host }}: memory {{ $value | humanizePercentage }} used",
                "description": f"Framebuffer use above {t['gpu_memory_ratio']:.0%} for {t['gpu_memory_for']}: "
                "a service outside the GPU plan, or one over its reservation, may make another fail to allocate.",
            },
        },
        {
            "alert": "GatewayFailureRatioHigh",
            "expr": (
                f"sum by (requested_model) (rate(litellm_proxy_failed_requests_metric_total[{FAILURE_WINDOW}]))"
                f" / sum by (requested_model) (rate(litellm_proxy_total_requests_metric_total[{FAILURE_WINDOW}]))"
                f" > {t['failure_ratio']}"
            ),
            "for": t["failure_for"],
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $value | humanizePercentage }} of gateway requests for {{ $labels.requested_model }} fail",
                "description": f"More than {t['failure_ratio']:.0%} of requests for this model failed over "
                f"{FAILURE_WINDOW}, for {t['failure_for']}. See the gateway's log and the model's dashboard.",
            },
        },
    ]


def render_alert_rules(thresholds: AlertThresholds | None = None) -> str:
    """The rules file (one group), as both Prometheus 2.42 and 3.x load it."""
    return yaml.safe_dump({"groups": [{"name": GROUP_NAME, "rules": alert_rules(thresholds)}]}, sort_keys=True)
