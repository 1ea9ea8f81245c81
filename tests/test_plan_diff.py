"""Blast radius of typical stack-file changes: each replaces, updates or creates only what it must."""

import copy

import pytest

from config.plan import run_program
from config.plan_diff import CREATE, DELETE, REPLACE, UPDATE, diff_plans, effective

CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"

BASE = {
    "hosts": {"gpu-01": {"docker": "ssh://deploy@gpu-01", "gpus": [{"id": str(i), "memoryGiB": 80} for i in range(3)]}},
    "vllm": [
        {"name": "qwen3", "model": "Qwen/Qwen3-30B-A3B-FP8", "gpus": ["0"], "gpuMemoryUtilization": 0.7, "maxModelLen": 32768, "toolCallParser": "hermes"},
        {"name": "coder", "model": "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", "gpus": ["1"], "gpuMemoryUtilization": 0.8},
    ],
    "ollama": {"gpus": ["0"], "vramGiB": 8, "env": {"OLLAMA_KEEP_ALIVE": "24h"}, "models": [{"name": "vl", "model": "qwen2.5vl:7b", "maxTokens": 16384}]},
    "infinity": {"gpus": ["0"], "vramGiB": 4, "models": [{"name": "nomic", "model": "nomic-ai/nomic-embed-text-v1.5", "mode": "embedding"}]},
    "speaches": {
        "gpus": ["0"],
        "vramGiB": 3,
        "models": [
            {"name": "whisper", "model": "Systran/faster-whisper-small", "mode": "transcription"},
            {"name": "piper", "model": "speaches-ai/piper-fr_FR-siwis-medium", "mode": "speech"},
        ],
    },
    "gateway": {"fallbacks": {"qwen3": ["coder"]}, "rateLimits": {"qwen3": {"rpm": 600}}},
}


@pytest.fixture(scope="module")
def before():
    return run_program(BASE)


def changed(before, edit) -> set[tuple[str, str, str]]:
    after_config = copy.deepcopy(BASE)
    edit(after_config)
    changes = effective(diff_plans(before, run_program(after_config)))
    for change in changes:
        assert not (change.type == VOLUME and change.action in (REPLACE, DELETE)), f"retained volume touched: {change}"
    return {(c.action, c.type, c.name) for c in changes}


def test_same_file_changes_nothing_and_rotates_no_secret(before):
    assert changed(before, lambda c: None) == set()


def test_fallback_change_replaces_only_the_gateway(before):
    assert changed(before, lambda c: c["gateway"].update(fallbacks={"qwen3": ["vl"]})) == {(REPLACE, CONTAINER, "gateway")}


def test_rate_limit_change_replaces_only_the_gateway(before):
    assert changed(before, lambda c: c["gateway"]["rateLimits"]["qwen3"].update(rpm=60)) == {(REPLACE, CONTAINER, "gateway")}


def test_retries_change_replaces_only_the_gateway(before):
    assert changed(before, lambda c: c["gateway"].update(numRetries=5)) == {(REPLACE, CONTAINER, "gateway")}


def test_vllm_context_length_replaces_only_that_vllm(before):
    assert changed(before, lambda c: c["vllm"][0].update(maxModelLen=65536)) == {(REPLACE, CONTAINER, "qwen3")}


def test_vllm_utilization_replaces_only_that_vllm(before):
    assert changed(before, lambda c: c["vllm"][1].update(gpuMemoryUtilization=0.75)) == {(REPLACE, CONTAINER, "coder")}


def test_litellm_image_bump_touches_only_litellm(before):
    assert changed(before, lambda c: c["gateway"].update(image="ghcr.io/berriai/litellm:v1.108.17")) == {
        (REPLACE, IMAGE, "gateway-image"),
        (REPLACE, CONTAINER, "gateway"),
    }


def test_redis_image_bump_touches_only_redis(before):
    assert changed(before, lambda c: c["gateway"].update(redisImage="redis:8")) == {
        (REPLACE, IMAGE, "gateway-redis-image"),
        (REPLACE, CONTAINER, "gateway-redis"),
    }


def test_gateway_port_replaces_only_the_gateway(before):
    assert changed(before, lambda c: c["gateway"].update(port=8080)) == {(REPLACE, CONTAINER, "gateway")}


def test_added_ollama_model_adds_its_pull_and_routes_it(before):
    # The gateway's config file must list the new model, so LiteLLM is recreated; Ollama and the other pulls stay.
    assert changed(before, lambda c: c["ollama"]["models"].append({"name": "small", "model": "qwen3:0.6b"})) == {
        (CREATE, COMMAND, "ollama-pull-qwen3-0.6b"),
        (REPLACE, CONTAINER, "gateway"),
    }


def test_removed_speaches_model_deletes_only_its_download(before):
    assert changed(before, lambda c: c["speaches"]["models"].pop()) == {
        (DELETE, COMMAND, "speaches-pull-speaches-ai-piper-fr_FR-siwis-medium"),
        (REPLACE, CONTAINER, "gateway"),
    }


def test_ollama_env_change_replaces_ollama_and_repulls_onto_the_kept_store(before):
    # The pull names the container by id, so a new container re-runs the pull (an update, not a delete + create).
    result = changed(before, lambda c: c["ollama"]["env"].update(OLLAMA_KEEP_ALIVE="1h"))
    assert result == {(REPLACE, CONTAINER, "ollama"), (UPDATE, COMMAND, "ollama-pull-qwen2.5vl-7b")}


def test_added_infinity_model_replaces_infinity_and_the_gateway(before):
    add = {"name": "rr", "model": "BAAI/bge-reranker-v2-m3", "mode": "rerank"}
    assert changed(before, lambda c: c["infinity"]["models"].append(add)) == {
        (REPLACE, CONTAINER, "infinity"),
        (REPLACE, CONTAINER, "gateway"),
    }


def test_added_vllm_leaves_the_others(before):
    add = {"name": "small", "model": "Qwen/Qwen3-0.6B", "gpus": ["2"], "gpuMemoryUtilization": 0.3}
    result = changed(before, lambda c: c["vllm"].append(add))
    assert (REPLACE, CONTAINER, "gateway") in result
    assert {n for a, t, n in result if a == REPLACE} == {"gateway"}
    assert {(t, n) for a, t, n in result if a == CREATE} >= {(CONTAINER, "small"), (VOLUME, "small-hf-cache"), (IMAGE, "small-image")}


def test_hf_token_reaches_only_the_engines_that_download_from_hugging_face(before):
    from config.secrets import SecretValue

    after = copy.deepcopy(BASE)
    after["hfToken"] = SecretValue()
    result = {(c.action, c.type, c.name) for c in effective(diff_plans(before, run_program(after, secrets={"hfToken": "hf_x"})))}
    assert {(a, n) for a, t, n in result if t == CONTAINER} == {
        (REPLACE, "qwen3"), (REPLACE, "coder"), (REPLACE, "infinity"), (REPLACE, "speaches"),
    }
    assert {(a, t) for a, t, n in result if t != CONTAINER} == {(UPDATE, COMMAND)}


def test_restart_policy_would_update_in_place(before):
    after = run_program(BASE)
    gateway = next(r for r in after.resources if r.type == CONTAINER and r.name == "gateway")
    gateway.inputs["restart"] = "always"
    assert [(c.action, c.keys) for c in effective(diff_plans(before, after))] == [(UPDATE, ("restart",))]


def test_healthcheck_change_replaces_because_it_is_listed_in_replace_on_changes(before):
    after = run_program(BASE)
    qwen = next(r for r in after.resources if r.type == CONTAINER and r.name == "qwen3")
    qwen.inputs["healthcheck"] = {**qwen.inputs["healthcheck"], "retries": 9}
    assert [(c.action, c.name) for c in effective(diff_plans(before, after))] == [(REPLACE, "qwen3")]
