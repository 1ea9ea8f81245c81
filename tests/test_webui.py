"""`llmstack:webui`: Open WebUI's container, its own gateway key, and the stack's models for each of its features."""

import io
import json
import re
import shlex
from pathlib import Path

import pytest

from components import gateway_key, webui
from config.cli import main
from config.plan import Plan, is_secret, reveal, run_program
from tests.conftest import ROOT, container, envs_of, plan_of_file

REQUIREMENTS = ROOT / "tests" / "contract" / "requirements-webui.txt"
CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
OLLAMA = {"models": [{"name": "qwen2.5", "model": "qwen2.5:0.5b"}, {"name": "llama3", "model": "llama3.2:1b"}]}
INFINITY = {
    "models": [
        {"name": "bge-small", "model": "BAAI/bge-small-en-v1.5", "mode": "embedding"},
        {"name": "mxbai-rerank", "model": "mixedbread-ai/mxbai-rerank-xsmall-v1", "mode": "rerank"},
    ]
}
SPEACHES = {
    "models": [
        {"name": "whisper", "model": "Systran/faster-whisper-tiny", "mode": "transcription"},
        {"name": "piper", "model": "speaches-ai/piper-en_US-amy-low", "mode": "speech"},
    ]
}


@pytest.fixture(scope="module")
def dev() -> Plan:
    return plan_of_file(ROOT / "Pulumi.dev.yaml")


def registered_body(plan: Plan) -> dict:
    """The request body the registration command passes (its last argument; over ssh, the remote command's)."""
    argv = shlex.split(reveal(registration(plan).inputs["create"]))
    if argv[0] == "ssh":
        argv = shlex.split(argv[-1])
    return json.loads(argv[-1])


def registration(plan: Plan):
    [command] = [r for r in plan.of_type(COMMAND) if r.name == "webui-gateway-key-registration"]
    return command


# --- the image and its PyPI twin -----------------------------------------------------------------


def test_the_image_and_the_contract_tests_open_webui_are_the_same_release():
    pinned = re.search(r"^open-webui==(\S+)$", REQUIREMENTS.read_text(), re.M)
    assert pinned and pinned.group(1) == webui.VERSION
    assert webui.IMAGE == f"ghcr.io/open-webui/open-webui:v{webui.VERSION}"


# --- the container -------------------------------------------------------------------------------


def test_container_pinned_retained_healthy_and_published_on_loopback_only(dev: Plan):
    ui = container(dev, "webui")
    [image] = [r for r in dev.of_type("docker:index/remoteImage:RemoteImage") if r.name == "webui-image"]
    assert image.inputs["name"] == webui.IMAGE
    assert reveal(ui.inputs["ports"]) == [{"internal": webui.PORT, "external": 3000, "ip": "127.0.0.1"}]
    [volume] = ui.inputs["volumes"]
    assert volume["containerPath"] == webui.DATA_PATH
    [data] = [r for r in dev.of_type("docker:index/volume:Volume") if r.name == "webui-data"]
    assert data.retain_on_delete and volume["volumeName"] == data.inputs["name"]
    assert ui.inputs["healthcheck"]["tests"] == webui.HEALTH_TEST and ui.inputs["restart"] == "unless-stopped"
    # Docker names scoped by the stack; the network alias (what the edge will forward to) is not.
    assert (ui.inputs["name"], data.inputs["name"]) == ("dev-open-webui", "dev-open-webui-data")
    assert [a for net in ui.inputs["networksAdvanced"] for a in net["aliases"]] == [webui.HOSTNAME]
    assert dev.outputs["webuiUrl"] == "http://127.0.0.1:3000"  # on the Docker host (prod: through an ssh tunnel)


def test_envs_wire_every_feature_to_the_gateway_by_its_network_alias(dev: Plan):
    envs = envs_of(container(dev, "webui"))
    gateway = container(dev, "gateway")
    aliases = [a for net in gateway.inputs["networksAdvanced"] for a in net["aliases"]]
    base = envs["OPENAI_API_BASE_URL"]
    assert re.fullmatch(r"http://([^:/]+):4000/v1", base) and base.split("/")[2].split(":")[0] in aliases
    assert {k: v for k, v in envs.items() if not k.endswith("_KEY")} == {
        **webui.BASE_ENVS,
        "OPENAI_API_BASE_URL": base,
        "DEFAULT_MODELS": "qwen2.5-0.5b",
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_OPENAI_API_BASE_URL": base,
        "RAG_EMBEDDING_MODEL": "bge-small",
        "RAG_EMBEDDING_BATCH_SIZE": "1",
        "ENABLE_RAG_HYBRID_SEARCH": "True",
        "RAG_RERANKING_ENGINE": "external",
        "RAG_EXTERNAL_RERANKER_URL": base + "/rerank",
        "RAG_RERANKING_MODEL": "mxbai-rerank",
        "AUDIO_STT_ENGINE": "openai",
        "AUDIO_STT_OPENAI_API_BASE_URL": base,
        "AUDIO_STT_MODEL": "whisper-tiny",
        "AUDIO_TTS_ENGINE": "openai",
        "AUDIO_TTS_OPENAI_API_BASE_URL": base,
        "AUDIO_TTS_MODEL": "piper-amy",
        "AUDIO_TTS_VOICE": "alloy",
    }
    assert envs["ENABLE_PERSISTENT_CONFIG"] == "False" and envs["ENABLE_OLLAMA_API"] == "False"


def test_it_holds_its_own_key_never_the_master_key(dev: Plan):
    ui = container(dev, "webui")
    envs = envs_of(ui)
    key_envs = ["OPENAI_API_KEY", "RAG_OPENAI_API_KEY", "RAG_EXTERNAL_RERANKER_API_KEY", "AUDIO_STT_OPENAI_API_KEY", "AUDIO_TTS_OPENAI_API_KEY"]
    keys = {envs[name] for name in key_envs}
    [key] = keys
    master = reveal(dev.outputs["masterKey"])
    assert key.startswith("sk-") and key != master and master not in envs.values()
    # The registered key is the one the UI holds; every one of its envs is a secret item of its own.
    assert reveal(registration(dev).inputs["stdin"]) == key and is_secret(registration(dev).inputs["stdin"])
    for item in ui.sent["envs"]:
        name, value = reveal(item).split("=", 1)
        assert is_secret(item) == (name in key_envs or name == webui.SECRET_KEY_ENV), name
    assert len(envs[webui.SECRET_KEY_ENV]) == webui.SECRET_KEY_LENGTH


def test_the_key_is_registered_after_the_gateway_is_healthy_without_a_secret_on_its_command_line(dev: Plan):
    command = registration(dev)
    gateway = container(dev, "gateway")
    assert gateway.urn in command.depends_on
    text = reveal(command.inputs["create"]) + reveal(command.inputs["delete"])
    secrets = [reveal(dev.outputs["masterKey"]), reveal(command.inputs["stdin"])]
    assert not any(secret in text for secret in secrets)
    assert f"exec -i {gateway.id} python3 -c" in text and "/key/generate" in text
    assert f"exec {gateway.id} python3 -c" in reveal(command.inputs["delete"]) and "/key/delete" in text
    ui = container(dev, "webui")
    assert command.urn in ui.depends_on, "Open WebUI must start once its key is registered"


def test_the_key_may_call_every_chat_model_and_the_models_of_its_features(dev: Plan):
    body = registered_body(dev)
    assert body == gateway_key.register_body("open-webui", ["bge-small", "mxbai-rerank", "piper-amy", "qwen2.5-0.5b", "whisper-tiny"])
    prod = plan_of_file(ROOT / "Pulumi.prod.yaml")
    body = registered_body(prod)
    assert body["models"] == ["bge-reranker", "nomic", "piper", "qwen2.5-vl", "qwen3", "whisper"]
    assert "ssh" in reveal(registration(prod).inputs["create"]).split()[0]


def test_the_request_bodies_are_litellms_own(monkeypatch: pytest.MonkeyPatch):
    """What /key/generate and /key/update parse on LiteLLM 1.108.7: a caller-chosen key, its alias, models, LLM routes only."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # importing litellm would fetch its price map
    from litellm.types.proxy.management_endpoints.key_requests import GenerateKeyRequest, UpdateKeyRequest

    body = {**gateway_key.register_body("open-webui", ["qwen3", "nomic"]), "key": "sk-" + "a" * 48}
    generate = GenerateKeyRequest(**body)
    assert generate.key == body["key"] and generate.key_alias == "open-webui" and generate.models == ["nomic", "qwen3"]
    assert generate.key_type is not None and generate.key_type.value == "llm_api"
    update = UpdateKeyRequest(**{k: v for k, v in body.items() if k != "key_type"})
    assert update.key == body["key"] and update.models == ["nomic", "qwen3"]


# --- features from the stack's routes ------------------------------------------------------------


def webui_envs(raw: dict) -> dict[str, str]:
    return envs_of(container(run_program(raw), "webui"))


def test_each_feature_defaults_to_the_first_model_of_its_route_and_can_be_named():
    raw = {"ollama": OLLAMA, "infinity": INFINITY, "speaches": SPEACHES, "webui": {"defaultModel": "llama3", "speechVoice": "amy"}}
    envs = webui_envs(raw)
    assert envs["DEFAULT_MODELS"] == "llama3" and envs["AUDIO_TTS_VOICE"] == "amy"
    assert (envs["RAG_EMBEDDING_MODEL"], envs["RAG_RERANKING_MODEL"]) == ("bge-small", "mxbai-rerank")
    assert (envs["AUDIO_STT_MODEL"], envs["AUDIO_TTS_MODEL"]) == ("whisper", "piper")


def test_a_stack_without_a_route_gets_that_feature_off_and_check_says_so(tmp_path: Path):
    raw = {"ollama": OLLAMA, "webui": {}}
    envs = webui_envs(raw)
    assert envs["BYPASS_EMBEDDING_AND_RETRIEVAL"] == "True"
    assert not [name for name in envs if name.startswith(("RAG_", "AUDIO_"))]
    assert [name for name in envs if name.endswith("API_KEY")] == ["OPENAI_API_KEY"]
    path = tmp_path / "Pulumi.chat.yaml"
    path.write_text(json.dumps({"config": {f"llmstack:{k}": v for k, v in raw.items()}}))
    out = io.StringIO()
    assert main(["check", str(path)], out=out) == 0
    line = out.getvalue()
    for phrase in ("document search (embeddings) off (the stack has no embedding model)",
                   "reranking of document search results off (the stack has no rerank model)",
                   "speech to text off (the stack has no transcription model)",
                   "text to speech off (the stack has no speech model)"):
        assert phrase in line, line


def test_false_turns_a_feature_off():
    raw = {"ollama": OLLAMA, "infinity": INFINITY, "speaches": SPEACHES, "webui": {"rerankingModel": False, "speechModel": False}}
    envs = webui_envs(raw)
    assert envs["RAG_EMBEDDING_MODEL"] == "bge-small" and "RAG_RERANKING_MODEL" not in envs and "ENABLE_RAG_HYBRID_SEARCH" not in envs
    assert "AUDIO_TTS_MODEL" not in envs and envs["AUDIO_STT_MODEL"] == "whisper"
    assert "RAG_EXTERNAL_RERANKER_API_KEY" not in envs and "AUDIO_TTS_OPENAI_API_KEY" not in envs


def test_without_the_key_nothing_of_the_ui_is_deployed():
    plan = run_program({"ollama": OLLAMA})
    assert not [r for r in plan.resources if r.name.startswith("webui")]
    assert "webuiUrl" not in plan.outputs


def test_the_component_keeps_every_secret_a_secret():
    from config.plan import run_under_mocks

    def body() -> None:
        webui.OpenWebUI("ui", {"network_name": "llm", "gateway_url": "http://gw:4000/v1", "api_key": "sk-" + "k" * 40, "bind_port": 3100})

    plan = run_under_mocks(body, {}, [])
    ui = container(plan, "ui")
    for item in ui.sent["envs"]:
        text = reveal(item)
        if "sk-kkkk" in text or text.startswith(webui.SECRET_KEY_ENV):
            assert is_secret(item), text
    assert envs_of(ui)["OPENAI_API_BASE_URL"] == "http://gw:4000/v1" and "DEFAULT_MODELS" not in envs_of(ui)


# --- blast radius --------------------------------------------------------------------------------


def webui_changes(edit) -> set[tuple[str, str, str]]:
    from config.plan_diff import diff_plans, effective

    base = {"ollama": OLLAMA, "infinity": INFINITY, "speaches": SPEACHES, "webui": {"port": 3000}}
    after = json.loads(json.dumps(base))
    edit(after)
    return {(c.action, c.type, c.name) for c in effective(diff_plans(run_program(base), run_program(after)))}


def test_another_chat_model_replaces_only_the_ui_container():
    from config.plan_diff import REPLACE

    assert webui_changes(lambda c: c["webui"].update(defaultModel="llama3")) == {(REPLACE, CONTAINER, "webui")}


def test_turning_reranking_off_replaces_the_ui_and_narrows_its_key_in_place():
    from config.plan_diff import REPLACE, UPDATE

    assert webui_changes(lambda c: c["webui"].update(rerankingModel=False)) == {
        (REPLACE, CONTAINER, "webui"),
        (UPDATE, COMMAND, "webui-gateway-key-registration"),
    }
