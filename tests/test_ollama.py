"""OllamaServer under Pulumi's mocks: image, GPUs, envs, model store, healthcheck, one pull per model, model entries."""

import pytest

from components import model_pull, ollama
from config.errors import StackConfigError
from config.plan import Plan, is_secret, reveal, run_program
from config.validation import validate
from tests.conftest import container, gateway_config, pulls

VL = {"name": "qwen2.5-vl", "model": "qwen2.5vl:7b-q4_K_M", "maxTokens": 16384}
SMALL = {"name": "small", "model": "qwen2.5:0.5b"}
ENV = {"OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KEEP_ALIVE": "24h"}


def plan_with(**changes) -> Plan:
    return run_program({"ollama": {"gpus": "all", "env": ENV, "models": [VL, SMALL], **changes}})


@pytest.fixture(scope="module")
def plan() -> Plan:
    return plan_with()




def test_image_pinned_kept_locally_and_used_by_id(plan):
    assert plan.named("ollama-image").inputs == {"name": ollama.IMAGE, "keepLocally": True}
    assert container(plan, "ollama").inputs["image"].startswith("sha256:")


def test_image_override():
    assert plan_with(image="ollama/ollama:0.36.0").named("ollama-image").inputs["name"] == "ollama/ollama:0.36.0"


def test_all_gpus_is_count_minus_one(plan):
    assert container(plan, "ollama").inputs["deviceRequests"] == [{"driver": "nvidia", "capabilities": ["gpu"], "count": -1}]


def test_device_ids_request_exactly_those_gpus():
    c = container(plan_with(gpus=["0", "1"]), "ollama").inputs
    assert c["deviceRequests"] == [{"driver": "nvidia", "capabilities": ["gpu"], "deviceIds": ["0", "1"]}]


def test_no_gpus_means_no_device_request():
    c = container(run_program({"ollama": {"models": [SMALL]}}), "ollama").inputs
    assert "deviceRequests" not in c
    assert c["image"].startswith("sha256:")


def test_envs_are_the_settings_sorted_and_plain(plan):
    envs = container(plan, "ollama").inputs["envs"]
    assert not is_secret(envs)
    assert envs == ["OLLAMA_FLASH_ATTENTION=1", "OLLAMA_KEEP_ALIVE=24h", "OLLAMA_KV_CACHE_TYPE=q8_0"]


def test_only_ollama_settings_are_accepted():
    with pytest.raises(ValueError, match="not Ollama settings"):
        ollama.ollama_settings({"OLLAMA_KEEP_ALIVE": "1h", "HTTP_PROXY": "x"})
    with pytest.raises(StackConfigError, match="not Ollama settings"):
        validate({"ollama": {"env": {"KEEP_ALIVE": "1h"}, "models": [SMALL]}})


def test_model_store_is_retained_and_mounted(plan):
    volume = plan.named("ollama-models")
    assert volume.retain_on_delete
    assert volume.inputs["name"] == "dev-ollama-models"
    assert container(plan, "ollama").inputs["volumes"] == [{"volumeName": "dev-ollama-models", "containerPath": "/root/.ollama"}]


def test_healthcheck_is_ollama_list_without_a_shell(plan):
    c = container(plan, "ollama")
    tests = c.inputs["healthcheck"]["tests"]
    assert tests == ["CMD", "ollama", "list"]
    assert "||" not in tests and not any("curl" in t for t in tests)
    assert c.inputs["healthcheck"]["startPeriod"] == ollama.HEALTH_START_PERIOD
    assert c.inputs["restart"] == "unless-stopped"
    assert c.inputs["wait"] is True and c.inputs["waitTimeout"] > 60
    assert c.replace_on_changes == ["healthcheck"]


def test_serves_on_the_network_only(plan):
    c = container(plan, "ollama").inputs
    assert c["command"] == ["serve"]
    assert c["name"] == "dev-ollama"
    assert c["networksAdvanced"] == [{"name": "dev-llm", "aliases": ["ollama"]}]
    assert "ports" not in c


def test_one_pull_per_model_after_the_container(plan):
    ollama_container = container(plan, "ollama")
    found = pulls(plan, "ollama")
    assert [p.name for p in found] == ["ollama-pull-qwen2.5-0.5b", "ollama-pull-qwen2.5vl-7b-q4_K_M"]
    for pull, tag in zip(found, ["qwen2.5:0.5b", "qwen2.5vl:7b-q4_K_M"]):
        assert pull.inputs["triggers"] == ["unix:///var/run/docker.sock", "dev-ollama", tag]
        assert f"docker -H unix:///var/run/docker.sock exec ollama-id ollama pull {tag}" in pull.inputs["create"]
        # Removal addresses the container by id too: another stack on the engine may own a container named alike.
        assert "exec ollama-id sh -c" in pull.inputs["delete"] and f"sh {tag}" in pull.inputs["delete"]
        assert "dev-ollama " not in pull.inputs["delete"].replace("dev-ollama is", "")
        assert "container inspect" in pull.inputs["delete"]
        assert ollama_container.urn in pull.depends_on


def test_pull_and_remove_argv():
    assert ollama.pull_argv("qwen2.5:0.5b") == ["ollama", "pull", "qwen2.5:0.5b"]
    assert ollama.remove_argv("qwen2.5:0.5b") == ["sh", "-c", ollama.REMOVE_SCRIPT, "sh", "qwen2.5:0.5b"]
    assert 'ollama rm "$1"' in ollama.REMOVE_SCRIPT


def test_pulls_run_over_ssh_with_the_stack_ssh_opts():
    plan = run_program(
        {
            "hosts": {"gpu": {"docker": "ssh://deploy@gpu-01", "sshOpts": ["-o", "StrictHostKeyChecking=accept-new"]}},
            "ollama": {"models": [SMALL]},
        }
    )
    create = plan.named("ollama-pull-qwen2.5-0.5b").inputs["create"]
    assert "ssh -o StrictHostKeyChecking=accept-new -- deploy@gpu-01 'docker exec ollama-id ollama pull qwen2.5:0.5b'" in create
    assert "docker -H" not in create


def test_a_tag_used_twice_is_pulled_once():
    plan = run_program({"ollama": {"models": [SMALL, {"name": "small-long", "model": "qwen2.5:0.5b", "maxTokens": 8192}]}})
    assert [p.name for p in pulls(plan, "ollama")] == ["ollama-pull-qwen2.5-0.5b"]
    assert [e["model_name"] for e in gateway_config(plan)["model_list"]] == ["small", "small-long"]


def test_model_entries_reach_ollama_without_a_key(plan):
    assert gateway_config(plan)["model_list"] == [
        {
            "model_name": "qwen2.5-vl",
            "litellm_params": {"model": "ollama_chat/qwen2.5vl:7b-q4_K_M", "api_base": "http://ollama:11434"},
            "model_info": {"mode": "chat", "max_tokens": 16384},
        },
        {
            "model_name": "small",
            "litellm_params": {"model": "ollama_chat/qwen2.5:0.5b", "api_base": "http://ollama:11434"},
            "model_info": {"mode": "chat"},
        },
    ]
    assert not any(e.startswith("OLLAMA") for e in reveal(container(plan, "gateway").inputs["envs"]))


def test_component_outputs():
    entries = ollama.model_entries([{"name": "b", "model": "t:1"}, {"name": "a", "model": "t:2", "max_tokens": 10}], "http://ollama:11434")
    assert [e["model_name"] for e in entries] == ["a", "b"]
    assert entries[0] == {"model_name": "a", "model": "ollama_chat/t:2", "api_base": "http://ollama:11434", "mode": "chat", "max_tokens": 10}


def test_pull_scripts_are_the_shared_mechanism(plan):
    pull = plan.named("ollama-pull-qwen2.5-0.5b")
    args: model_pull.ModelPullArgs = {
        "docker_host": "unix:///var/run/docker.sock",
        "ssh_opts": [],
        "container_name": "dev-ollama",
        "container_id": "ollama-id",
        "model": "qwen2.5:0.5b",
        "pull": ollama.pull_argv("qwen2.5:0.5b"),
        "remove": ollama.remove_argv("qwen2.5:0.5b"),
    }
    assert pull.inputs["create"] == model_pull.pull_script(args, "ollama-id")
    assert pull.inputs["delete"] == model_pull.remove_script(args, "ollama-id")

