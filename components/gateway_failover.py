"""Failover settings of the gateway, placed where LiteLLM 1.108.7 reads them: cooldowns on the router,
health-check routing for every model name that several deployments (replicas) serve."""

from collections import Counter
from collections.abc import Mapping
from typing import Any

# Facts of LiteLLM 1.108.7 (PyPI litellm==1.108.7, the gateway image's release):
# - The router takes `allowed_fails` and `cooldown_time` from `router_settings` only: under
#   `litellm_settings`, `cooldown_time` is never read (router.py: `self.cooldown_time = cooldown_time or
#   DEFAULT_COOLDOWN_TIME_SECONDS`, 5 s) and `allowed_fails` equal to LiteLLM's own default is treated
#   as unset (router_utils/cooldown_handlers.py `_is_allowed_fails_set_on_router`).
# - `enable_weighted_failover` (router_settings, simple-shuffle only): once the retries are spent, one
#   more attempt on a deployment of the same model name that has not failed this request (router.py
#   `_maybe_run_weighted_failover`). Retries alone re-pick at random and may hit the dead one again.
# - `general_settings.background_health_checks` + `health_check_interval` probe each deployment with a
#   real call; `enable_health_check_routing` then routes around those that failed their last probe
#   (proxy_server.py `_write_health_state_to_router_cache`, router.py
#   `_async_filter_health_check_unhealthy_deployments`); `background_health_check_model_groups` limits
#   both to the listed model names, so single-deployment models are never probed.
# - A chat probe is a completion of a short canned prompt with `max_tokens` 16 unless
#   `model_info.health_check_max_tokens` says otherwise (proxy/health_check.py
#   `_resolve_health_check_max_tokens`); `model_info.health_check_timeout` bounds it (default 60 s).
HEALTH_CHECK_MAX_TOKENS = 1
# LiteLLM adds max_tokens to completion-style probes only (proxy/health_check.py `_MAX_TOKEN_SUPPORT_MODES`);
# of our modes that is `chat`: embedding, rerank and audio probes carry none.
COMPLETION_MODE = "chat"


def replicated_models(model_list: list[dict[str, Any]]) -> list[str]:
    """Model names served by more than one deployment, sorted."""
    counts = Counter(entry["model_name"] for entry in model_list)
    return sorted(name for name, count in counts.items() if count > 1)


def apply_failover(config: dict[str, Any], settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The proxy config with the failover settings added: cooldowns and weighted failover on the router;
    health checks and health-check routing scoped to the replicated model names (none: no probes)."""
    def value(key: str) -> Any:
        return settings.get(key, defaults[key])

    router = config["router_settings"]
    router["allowed_fails"] = int(value("allowed_fails"))
    router["cooldown_time"] = int(value("cooldown_time"))
    router["enable_weighted_failover"] = True
    interval = int(value("health_check_interval"))
    replicated = replicated_models(config["model_list"])
    if interval <= 0 or not replicated:
        return config
    general = config["general_settings"]
    general["background_health_checks"] = True
    general["health_check_interval"] = interval
    general["background_health_check_model_groups"] = replicated
    if bool(value("health_check_routing")):
        general["enable_health_check_routing"] = True
    timeout = int(value("health_check_timeout"))
    for entry in config["model_list"]:
        if entry["model_name"] not in replicated:
            continue
        info = entry["model_info"]
        info["health_check_timeout"] = timeout
        if info.get("mode") == COMPLETION_MODE:
            info["health_check_max_tokens"] = HEALTH_CHECK_MAX_TOKENS
    return config
