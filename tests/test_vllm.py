"""VllmServer under Pulumi's mocks: image, GPUs, command, cache volume, keys, healthcheck, model entries."""

import json

import pytest

from components import vllm
from config.plan import Plan, is_secret, reveal, run_program
from tests.conftest import container, gateway_config

QWEN = {
    "name": "qwen3",
    "model": "Qwen/Qwen3-30B-A3B-FP8",
    "gpus": ["0"],
    "gpuMemoryUtilization": 0.8,
    "maxModelLen": 131072,
    "reasoningParser": "qwen3",
    "toolCallParser": "hermes",
    "hfOverrides": {
        "max_position_embeddings": 131072,
        "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768, "rope_theta": 1000000.0},
    },
}


def plan_with(**changes) -> Plan:
    return run_program({"vllm": [{**QWEN, **changes}]})


@pytest.fixture(scope="module")
def plan() -> Plan:
    return plan_with()


def test_command_is_built_from_typed_args(plan):
    assert container(plan, "qwen3").inputs["command"] == [
        "Qwen/Qwen3-30B-A3B-FP8",
        "--served-model-name", "qwen3",
        "--port", "8000",
        "--max-model-len", "131072",
        "--gpu-memory-utilization", "0.8",
        "--reasoning-parser", "qwen3",
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
        "--hf-overrides", '{"max_position_embeddings":131072,"rope_parameters":{"factor":4.0,'
        '"original_max_position_embeddings":32768,"rope_theta":1000000.0,"rope_type":"yarn"}}',
    ]


def test_command_has_no_removed_flag(plan):
    command = container(plan, "qwen3").inputs["command"]
    assert not vllm.removed_flags_in(command)
    assert json.loads(command[command.index("--hf-overrides") + 1])["rope_parameters"]["rope_type"] == "yarn"


def test_extra_args_come_last():
    command = container(plan_with(extraArgs=["--kv-cache-dtype", "fp8"]), "qwen3").inputs["command"]
    assert command[-2:] == ["--kv-cache-dtype", "fp8"]


def test_one_device_id_requests_exactly_that_gpu(plan):
    assert container(plan, "qwen3").inputs["deviceRequests"] == [
        {"driver": "nvidia", "capabilities": ["gpu"], "deviceIds": ["0"]}
    ]
    assert "--tensor-parallel-size" not in container(plan, "qwen3").inputs["command"]


def test_several_ids_set_tensor_parallel_and_host_ipc():
    c = container(plan_with(gpus=["0", "1"]), "qwen3").inputs
    assert c["deviceRequests"] == [{"driver": "nvidia", "capabilities": ["gpu"], "deviceIds": ["0", "1"]}]
    assert c["command"][c["command"].index("--tensor-parallel-size") + 1] == "2"
    assert c["ipcMode"] == "host"


def test_all_gpus_is_count_minus_one():
    c = container(plan_with(gpus="all"), "qwen3").inputs
    assert c["deviceRequests"] == [{"driver": "nvidia", "capabilities": ["gpu"], "count": -1}]


def test_container_named_after_model_with_alias(plan):
    c = container(plan, "qwen3").inputs
    assert c["name"] == "dev-qwen3"  # scoped by the stack; the gateway reaches it by the alias
    assert c["networksAdvanced"] == [{"name": "dev-llm", "aliases": ["qwen3"]}]


def test_image_pinned_kept_locally_and_used_by_id(plan):
    image = plan.named("qwen3-image")
    assert image.inputs == {"name": vllm.IMAGE, "keepLocally": True}
    assert container(plan, "qwen3").inputs["image"].startswith("sha256:")
    assert image.custom_timeouts["create"] == "60m"


def test_image_override():
    assert plan_with(image="vllm/vllm-openai:v0.31.0-cu129").named("qwen3-image").inputs["name"] == "vllm/vllm-openai:v0.31.0-cu129"


def test_cache_volume_is_retained_and_mounted(plan):
    volume = plan.named("qwen3-hf-cache")
    assert volume.retain_on_delete
    assert volume.inputs["name"] == "dev-qwen3-hf-cache"
    assert container(plan, "qwen3").inputs["volumes"] == [
        {"volumeName": "dev-qwen3-hf-cache", "containerPath": "/root/.cache/huggingface"}
    ]


def test_api_key_is_generated_secret_env(plan):
    envs = container(plan, "qwen3").inputs["envs"]
    assert is_secret(envs)
    names = [e.split("=", 1)[0] for e in reveal(envs)]
    assert names == sorted(names) == ["HF_HOME", "VLLM_API_KEY"]
    assert plan.named("qwen3-api-key").type == "random:index/randomPassword:RandomPassword"


def test_hf_token_is_passed_as_secret_when_set():
    plan = run_program({"vllm": [QWEN], "hfToken": _secret()}, secrets={"hfToken": "hf-test-token"})
    envs = container(plan, "qwen3").inputs["envs"]
    assert is_secret(envs) and "HF_TOKEN=hf-test-token" in reveal(envs)


def test_healthcheck_start_period_and_waiting(plan):
    c = container(plan, "qwen3")
    assert c.inputs["healthcheck"]["tests"] == ["CMD", "curl", "-fsS", "http://localhost:8000/health"]
    assert c.inputs["healthcheck"]["startPeriod"] == "60m"
    assert c.inputs["restart"] == "unless-stopped"
    assert c.inputs["wait"] is True and c.inputs["waitTimeout"] >= 3600
    assert c.replace_on_changes == ["healthcheck"]
    assert int(c.custom_timeouts["create"].rstrip("m")) * 60 > c.inputs["waitTimeout"]


def test_start_period_is_configurable():
    c = container(plan_with(healthStartPeriod="2h"), "qwen3")
    assert c.inputs["healthcheck"]["startPeriod"] == "2h"
    assert c.inputs["waitTimeout"] >= 7200


def test_model_entry_reaches_the_gateway(plan):
    config = gateway_config(plan)
    assert config["model_list"] == [
        {
            "model_name": "qwen3",
            "litellm_params": {
                "model": "hosted_vllm/qwen3",
                "api_base": "http://qwen3:8000/v1",
                "api_key": "os.environ/VLLM_QWEN3_API_KEY",
            },
            "model_info": {"mode": "chat", "supports_function_calling": True},
        }
    ]
    gateway_envs = reveal(container(plan, "gateway").inputs["envs"])
    vllm_key = next(e for e in reveal(container(plan, "qwen3").inputs["envs"]) if e.startswith("VLLM_API_KEY="))
    assert "VLLM_QWEN3_API_KEY=" + vllm_key.split("=", 1)[1] in gateway_envs


def test_serve_command_refuses_removed_flags():
    with pytest.raises(ValueError, match="--swap-space"):
        vllm.serve_command({"served_model_name": "m", "model": "m", "network_name": "n", "extra_args": ["--swap-space", "4"]})


def _secret():
    from config.secrets import SecretValue

    return SecretValue()

