"""Renders LiteLLM's proxy config file from model entries and gateway settings; the file names env vars, never secret values."""

from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict

import yaml

from .gateway_failover import apply_failover
from .model_entry import MODES, LiteLLMModelEntry

__all__ = ["GatewaySettings", "RateLimit"]

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
DATABASE_URL_ENV = "DATABASE_URL"
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"


class RateLimit(TypedDict):
    """Per-model request and token limits, applied to each of the model's deployments."""

    rpm: NotRequired[int]
    """Requests per minute."""
    tpm: NotRequired[int]
    """Tokens per minute."""


class GatewaySettings(TypedDict):
    """Routing and resilience settings of the gateway."""

    routing_strategy: NotRequired[str]
    """`simple-shuffle`, `least-busy`, `usage-based-routing-v2` or `latency-based-routing`."""
    num_retries: NotRequired[int]
    """Retries of a failed call before falling back."""
    request_timeout: NotRequired[int]
    """Seconds a call to an engine may take."""
    fallbacks: NotRequired[dict[str, list[str]]]
    """Model name -> the models tried, in order, when it fails."""
    rate_limits: NotRequired[dict[str, RateLimit]]
    """Model name -> its rpm/tpm limits."""
    allowed_fails: NotRequired[int]
    """Failures of a deployment (within `cooldown_time`) before it is cooled down; LiteLLM's own default, 3,
    means its failure-rate rule instead: more than half of at least 5 calls in the minute failed."""
    cooldown_time: NotRequired[int]
    """Seconds a failing deployment is taken out of rotation."""
    health_check_interval: NotRequired[int]
    """Seconds between probes of each deployment of a model served by several (a one-token call); 0: no probes."""
    health_check_timeout: NotRequired[int]
    """Seconds a probe may take before the deployment counts as down."""
    health_check_routing: NotRequired[bool]
    """Route around deployments whose last probe failed."""
    drop_params: NotRequired[bool]
    """Drop OpenAI params an engine does not support instead of failing."""
    callbacks: NotRequired[list[str]]
    """LiteLLM callbacks to turn on (`litellm_settings.callbacks`), e.g. `prometheus` (components/litellm_metrics.py)."""


ROUTING_STRATEGIES = ("simple-shuffle", "least-busy", "usage-based-routing-v2", "latency-based-routing")
# What the gateway does for a setting left out (the stack file's defaults are these too).
DEFAULT_SETTINGS: GatewaySettings = {
    "routing_strategy": "simple-shuffle",
    "num_retries": 3,
    "request_timeout": 600,
    "allowed_fails": 3,
    "cooldown_time": 30,
    "drop_params": True,
    "health_check_interval": 10,
    "health_check_timeout": 5,
    "health_check_routing": True,
}


class RedisEndpoint(TypedDict):
    """Where the gateway's router state lives."""

    host: str
    port: int


def _entry(entry: LiteLLMModelEntry, limit: Mapping[str, int]) -> dict:
    if entry["mode"] not in MODES:
        raise ValueError(f"model {entry['model_name']!r}: unknown mode {entry['mode']!r}; use one of {MODES}")
    params: dict = {"model": entry["model"], "api_base": entry["api_base"]}
    if entry.get("api_key_env"):
        params["api_key"] = f"os.environ/{entry['api_key_env']}"
    for key in ("rpm", "tpm"):
        if limit.get(key) is not None:
            params[key] = int(limit[key])
    info: dict = {"mode": entry["mode"]}
    if entry.get("max_tokens"):
        info["max_tokens"] = int(entry["max_tokens"])
    if entry.get("supports_function_calling"):
        info["supports_function_calling"] = True
    return {"model_name": entry["model_name"], "litellm_params": params, "model_info": info}


def litellm_config(
    entries: Sequence[LiteLLMModelEntry], settings: GatewaySettings, redis: RedisEndpoint
) -> dict:
    """The proxy config as a dict: entries sorted by name so the same stack always gives the same file."""
    rate_limits = settings.get("rate_limits") or {}
    ordered = sorted(entries, key=lambda e: (e["model_name"], e["model"], e["api_base"]))
    names = {e["model_name"] for e in ordered}
    for name in sorted(set(rate_limits) - names):
        raise ValueError(f"rate limit for unknown model {name!r}")
    litellm_settings: dict = {
        "num_retries": int(settings.get("num_retries", DEFAULT_SETTINGS["num_retries"])),
        "request_timeout": int(settings.get("request_timeout", DEFAULT_SETTINGS["request_timeout"])),
        "drop_params": bool(settings.get("drop_params", DEFAULT_SETTINGS["drop_params"])),
    }
    fallbacks = settings.get("fallbacks") or {}
    for model, targets in sorted(fallbacks.items()):
        unknown = [m for m in [model, *targets] if m not in names]
        if unknown:
            raise ValueError(f"fallbacks name unknown models {unknown}")
    if fallbacks:
        litellm_settings["fallbacks"] = [{m: list(t)} for m, t in sorted(fallbacks.items())]
    if settings.get("callbacks"):
        litellm_settings["callbacks"] = list(dict.fromkeys(settings["callbacks"]))
    config = {
        "model_list": [_entry(e, rate_limits.get(e["model_name"], {})) for e in ordered],
        "litellm_settings": litellm_settings,
        "router_settings": {
            "routing_strategy": settings.get("routing_strategy", DEFAULT_SETTINGS["routing_strategy"]),
            "redis_host": redis["host"],
            "redis_port": int(redis["port"]),
            "redis_password": f"os.environ/{REDIS_PASSWORD_ENV}",
        },
        "general_settings": {
            "master_key": f"os.environ/{MASTER_KEY_ENV}",
            "database_url": f"os.environ/{DATABASE_URL_ENV}",
        },
    }
    return apply_failover(config, settings, DEFAULT_SETTINGS)


def render_litellm_config(
    entries: Sequence[LiteLLMModelEntry], settings: GatewaySettings, redis: RedisEndpoint
) -> str:
    """The proxy config file's text (YAML, keys sorted)."""
    return yaml.safe_dump(litellm_config(entries, settings, redis), sort_keys=True, default_flow_style=False)
