"""The repository's stack files end to end under mocks: every route served by the expected models, GPU placement, start order, pulls."""

import pytest
import yaml

from components import infinity, speaches
from config.plan import Plan, reveal
from tests.conftest import ROOT, container, plan_of_file

PROD_MODELS = {
    "chat": ["qwen2.5-vl", "qwen3"],
    "embedding": ["nomic"],
    "rerank": ["bge-reranker"],
    "transcription": ["whisper"],
    "speech": ["piper"],
}
DEV_MODELS = {
    "chat": ["qwen2.5-0.5b"],
    "embedding": ["bge-small"],
    "rerank": ["mxbai-rerank"],
    "transcription": ["whisper-tiny"],
    "speech": ["piper-amy"],
}
CONTAINER = "docker:index/container:Container"


@pytest.fixture(scope="module")
def prod() -> Plan:
    return plan_of_file(ROOT / "Pulumi.prod.yaml")


@pytest.fixture(scope="module")
def dev() -> Plan:
    return plan_of_file(ROOT / "Pulumi.dev.yaml")


def pulled(plan: Plan, engine: str) -> list[str]:
    return sorted(r.inputs["triggers"][2] for r in plan.of_type("command:local:Command") if r.name.startswith(f"{engine}-pull-"))


def test_prod_serves_every_route_with_the_reference_models(prod):
    assert prod.outputs["models"] == PROD_MODELS
    assert prod.outputs["toolModels"] == ["qwen3"]


def test_dev_serves_every_route_with_small_models(dev):
    assert dev.outputs["models"] == DEV_MODELS
    assert all(dev.outputs["models"][route] for route in DEV_MODELS)


def test_dev_requests_no_gpu_anywhere(dev):
    containers = dev.of_type(CONTAINER)
    assert {c.name for c in containers} >= {"ollama", "infinity", "speaches", "gateway"}
    assert [c.name for c in containers if c.inputs.get("deviceRequests")] == []
    assert not any(c.name == "qwen3" for c in containers)
    raw = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    assert "llmstack:vllm" not in raw

    def has_gpus_key(value) -> bool:
        if isinstance(value, dict):
            return "gpus" in value or any(has_gpus_key(v) for v in value.values())
        if isinstance(value, list):
            return any(has_gpus_key(v) for v in value)
        return False

    assert not has_gpus_key(raw)


def test_dev_uses_the_cpu_images(dev):
    assert dev.named("infinity-image").inputs["name"].endswith("-cpu")
    assert dev.named("speaches-image").inputs["name"].endswith("-cpu")
    assert "WHISPER__INFERENCE_DEVICE=cpu" in reveal(container(dev, "speaches").inputs["envs"])


def test_prod_places_every_engine_on_gpu_0(prod):
    for name in ("qwen3", "ollama", "infinity", "speaches"):
        assert container(prod, name).inputs["deviceRequests"] == [
            {"driver": "nvidia", "capabilities": ["gpu"], "deviceIds": ["0"]}
        ], name
    assert prod.named("infinity-image").inputs["name"] == infinity.GPU_IMAGE
    assert prod.named("speaches-image").inputs["name"] == speaches.CUDA_IMAGE


def test_prod_vllm_starts_after_the_engines_on_its_gpu(prod):
    vllm_deps = container(prod, "qwen3").depends_on
    for name in ("ollama", "infinity", "speaches"):
        assert container(prod, name).urn in vllm_deps, name


def test_every_ollama_and_speaches_model_is_pulled(prod, dev):
    assert pulled(prod, "ollama") == ["qwen2.5vl:7b-q4_K_M"]
    assert pulled(prod, "speaches") == ["Systran/faster-whisper-small", "speaches-ai/piper-fr_FR-siwis-medium"]
    assert pulled(dev, "ollama") == ["qwen2.5:0.5b"]
    assert pulled(dev, "speaches") == ["Systran/faster-whisper-tiny", "speaches-ai/piper-en_US-amy-low"]


def test_prod_pulls_go_over_ssh_with_the_stack_ssh_opts(prod):
    for pull in prod.of_type("command:local:Command"):
        assert pull.inputs["create"].startswith("out=$(ssh -o StrictHostKeyChecking=accept-new -- deploy@gpu-01 "), pull.name
        assert pull.inputs["triggers"][0] == "ssh://deploy@gpu-01"


def test_dev_pulls_use_the_local_socket(dev):
    for pull in dev.of_type("command:local:Command"):
        assert pull.inputs["create"].startswith("out=$(docker -H unix:///var/run/docker.sock exec "), pull.name


def test_prod_ollama_settings(prod):
    assert container(prod, "ollama").inputs["envs"] == [
        "OLLAMA_FLASH_ATTENTION=1",
        "OLLAMA_KEEP_ALIVE=24h",
        "OLLAMA_KV_CACHE_TYPE=q8_0",
    ]
