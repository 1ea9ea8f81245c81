"""The gateway's failover settings: from the stack file to where LiteLLM 1.108.7 reads them in its config.

The real proxy's behaviour with these settings (a replica refusing or not answering) is in
tests/contract/test_failover.py; here, what the program renders."""

import yaml

from components.litellm_config import DEFAULT_SETTINGS, render_litellm_config
from components.model_entry import LiteLLMModelEntry
from config.plan import reveal, run_program
from config.program import gateway_args
from config.schema import Gateway, StackConfig
from config.validation import validate
from tests.conftest import container

REDIS = {"host": "litellm-redis", "port": 6379}


def entry(name: str, api_base: str, mode: str = "chat") -> LiteLLMModelEntry:
    return {"model_name": name, "model": f"hosted_vllm/{name}", "api_base": api_base, "mode": mode, "api_key_env": "VLLM_API_KEY"}


# Two deployments of `chat` (what two replicas give), one of `solo` and two of an embedding model.
ENTRIES = [
    entry("chat", "http://chat:8000/v1"),
    entry("chat", "https://10.0.0.2:8443/chat/v1"),
    entry("solo", "http://solo:8000/v1"),
    entry("embed", "http://infinity:7997", "embedding"),
    entry("embed", "https://10.0.0.2:8443/infinity", "embedding"),
]


def rendered(settings: dict) -> dict:
    return yaml.safe_load(render_litellm_config(ENTRIES, settings, REDIS))  # type: ignore[arg-type]


def test_defaults_fail_over():
    assert DEFAULT_SETTINGS["health_check_interval"] > 0 and DEFAULT_SETTINGS["health_check_routing"] is True
    config = rendered({})
    general = config["general_settings"]
    assert general["background_health_checks"] is True
    assert general["health_check_interval"] == DEFAULT_SETTINGS["health_check_interval"]
    assert general["enable_health_check_routing"] is True
    # Only model names with several deployments are probed and routed around.
    assert general["background_health_check_model_groups"] == ["chat", "embed"]
    router = config["router_settings"]
    assert router["enable_weighted_failover"] is True
    assert (router["allowed_fails"], router["cooldown_time"]) == (DEFAULT_SETTINGS["allowed_fails"], DEFAULT_SETTINGS["cooldown_time"])
    assert not {"allowed_fails", "cooldown_time"} & set(config["litellm_settings"])


def test_probes_are_one_token_and_bounded():
    infos = [(m["model_name"], m["model_info"]) for m in rendered({"health_check_timeout": 7})["model_list"]]
    for name, info in infos:
        if name == "solo":
            assert "health_check_timeout" not in info and "health_check_max_tokens" not in info
        else:
            assert info["health_check_timeout"] == 7
    # A chat probe is a completion: one token is enough to prove the engine answers.
    assert all(info["health_check_max_tokens"] == 1 for name, info in infos if name == "chat")
    # LiteLLM sends no max_tokens to an embedding probe; the key would only mislead a reader.
    assert all("health_check_max_tokens" not in info for name, info in infos if name == "embed")


def test_checks_off_or_nothing_to_route_around():
    off = rendered({"health_check_interval": 0})
    assert not {"background_health_checks", "enable_health_check_routing"} & set(off["general_settings"])
    assert all("health_check_timeout" not in m["model_info"] for m in off["model_list"])
    single = yaml.safe_load(render_litellm_config(ENTRIES[2:3], {}, REDIS))  # type: ignore[arg-type]
    assert set(single["general_settings"]) == {"master_key", "database_url"}
    no_routing = rendered({"health_check_routing": False})["general_settings"]
    assert no_routing["background_health_checks"] is True and "enable_health_check_routing" not in no_routing


def test_stack_file_keys_reach_the_config():
    raw = {
        "vllm": [{"name": "qwen3", "model": "Qwen/Qwen3-0.6B"}],
        "gateway": {"healthCheckInterval": 30, "healthCheckTimeout": 3, "healthCheckRouting": False, "cooldownTime": 45, "allowedFails": 2},
    }
    gateway = validate(raw).gateway
    assert (gateway.health_check_interval, gateway.health_check_timeout, gateway.health_check_routing) == (30, 3, False)
    assert (Gateway().health_check_interval, Gateway().health_check_routing) == (DEFAULT_SETTINGS["health_check_interval"], True)
    settings = gateway_args(StackConfig.model_validate({"gateway": raw["gateway"]}), [], [], "")["settings"]
    assert (settings["health_check_interval"], settings["health_check_timeout"], settings["health_check_routing"]) == (30, 3, False)
    plan = run_program(raw, stack="dev")
    upload = reveal(container(plan, "gateway").inputs["uploads"])[0]["content"]
    router = yaml.safe_load(upload)["router_settings"]
    assert (router["cooldown_time"], router["allowed_fails"]) == (45, 2)
