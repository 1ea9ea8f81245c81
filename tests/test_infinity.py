"""InfinityServer under Pulumi's mocks: image per variant, command, envs and key, cache volume, healthcheck, model entries."""

import pytest

from components import infinity
from config.plan import Plan, is_secret, reveal, run_program
from tests.conftest import container, gateway_config

NOMIC = {"name": "nomic", "model": "nomic-ai/nomic-embed-text-v1.5", "mode": "embedding"}
RERANKER = {"name": "bge-reranker", "model": "BAAI/bge-reranker-v2-m3", "mode": "rerank"}


def plan_with(**changes) -> Plan:
    return run_program({"infinity": {"gpus": ["0"], "models": [NOMIC, RERANKER], **changes}})


@pytest.fixture(scope="module")
def plan() -> Plan:
    return plan_with()


@pytest.fixture(scope="module")
def cpu_plan() -> Plan:
    return run_program({"infinity": {"models": [NOMIC, RERANKER]}})


def test_gpu_variant_image_and_device_request(plan):
    assert plan.named("infinity-image").inputs == {"name": infinity.GPU_IMAGE, "keepLocally": True}
    assert container(plan, "infinity").inputs["deviceRequests"] == [
        {"driver": "nvidia", "capabilities": ["gpu"], "deviceIds": ["0"]}
    ]


def test_all_gpus_is_count_minus_one():
    assert container(plan_with(gpus="all"), "infinity").inputs["deviceRequests"] == [
        {"driver": "nvidia", "capabilities": ["gpu"], "count": -1}
    ]


def test_cpu_variant_without_gpus(cpu_plan):
    assert cpu_plan.named("infinity-image").inputs["name"] == infinity.CPU_IMAGE
    assert "deviceRequests" not in container(cpu_plan, "infinity").inputs


def test_image_override():
    assert plan_with(image="michaelf34/infinity:0.0.78").named("infinity-image").inputs["name"] == "michaelf34/infinity:0.0.78"


def test_command_loads_every_model_sorted(plan):
    assert container(plan, "infinity").inputs["command"] == [
        "v2",
        "--model-id", "BAAI/bge-reranker-v2-m3",
        "--model-id", "nomic-ai/nomic-embed-text-v1.5",
        "--port", "7997",
    ]


def test_a_model_listed_twice_is_loaded_once():
    models = [NOMIC, {**NOMIC, "name": "nomic-again"}]
    assert infinity.serve_command(models) == ["v2", "--model-id", "nomic-ai/nomic-embed-text-v1.5", "--port", "7997"]


def test_envs_sorted_with_a_secret_generated_key(plan):
    envs = container(plan, "infinity").inputs["envs"]
    assert is_secret(envs)
    values = reveal(envs)
    names = [e.split("=", 1)[0] for e in values]
    assert names == sorted(names) == ["DO_NOT_TRACK", "HF_HOME", "INFINITY_ANONYMOUS_USAGE_STATS", "INFINITY_API_KEY"]
    assert values[:3] == ["DO_NOT_TRACK=1", "HF_HOME=/app/.cache/huggingface", "INFINITY_ANONYMOUS_USAGE_STATS=0"]
    assert len(values[3].split("=", 1)[1]) == 40
    password = plan.named("infinity-api-key")
    assert password.type == "random:index/randomPassword:RandomPassword"
    assert password.inputs["special"] is False


def test_hf_token_is_passed_as_secret_when_set():
    from config.secrets import SecretValue

    plan = run_program({"infinity": {"models": [NOMIC]}, "hfToken": SecretValue()}, secrets={"hfToken": "hf-test-token"})
    envs = container(plan, "infinity").inputs["envs"]
    assert is_secret(envs) and "HF_TOKEN=hf-test-token" in reveal(envs)


def test_cache_volume_is_retained_and_mounted(plan):
    volume = plan.named("infinity-cache")
    assert volume.retain_on_delete
    assert volume.inputs["name"] == "dev-infinity-cache"
    assert container(plan, "infinity").inputs["volumes"] == [{"volumeName": "dev-infinity-cache", "containerPath": "/app/.cache"}]


def test_healthcheck_waits_for_the_models(plan):
    c = container(plan, "infinity")
    assert c.inputs["healthcheck"]["tests"] == ["CMD", "curl", "-fsS", "http://localhost:7997/health"]
    assert c.inputs["healthcheck"]["startPeriod"] == "30m"
    assert c.inputs["wait"] is True and c.inputs["waitTimeout"] >= 30 * 60
    assert c.inputs["restart"] == "unless-stopped"
    assert c.replace_on_changes == ["healthcheck"]
    assert int(c.custom_timeouts["create"].rstrip("m")) * 60 > c.inputs["waitTimeout"]


def test_no_pulls_the_server_downloads_at_start(plan):
    assert not [r for r in plan.of_type("command:local:Command") if r.name.startswith("infinity")]


def test_model_entries_and_the_gateway_key(plan):
    assert gateway_config(plan)["model_list"] == [
        {
            "model_name": "bge-reranker",
            "litellm_params": {
                "model": "infinity/BAAI/bge-reranker-v2-m3",
                "api_base": "http://infinity:7997",
                "api_key": "os.environ/INFINITY_API_KEY",
            },
            "model_info": {"mode": "rerank"},
        },
        {
            "model_name": "nomic",
            "litellm_params": {
                "model": "infinity/nomic-ai/nomic-embed-text-v1.5",
                "api_base": "http://infinity:7997",
                "api_key": "os.environ/INFINITY_API_KEY",
            },
            "model_info": {"mode": "embedding"},
        },
    ]
    key = next(e for e in reveal(container(plan, "infinity").inputs["envs"]) if e.startswith("INFINITY_API_KEY="))
    assert key in reveal(container(plan, "gateway").inputs["envs"])
    assert is_secret(container(plan, "gateway").inputs["envs"])


def test_key_env_names_per_container():
    assert infinity.gateway_key_env("infinity") == "INFINITY_API_KEY"
    assert infinity.gateway_key_env("infinity-b") == "INFINITY_INFINITY_B_API_KEY"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        infinity.model_entries([{"name": "x", "model": "m", "mode": "chat"}], "http://infinity:7997", "K")  # type: ignore[typeddict-item]

