"""SpeachesServer under Pulumi's mocks, and its in-container scripts (healthcheck, download, removal) run against the Speaches stand-in."""

import json
import subprocess
from pathlib import Path

import pytest

from components import model_pull, speaches
from config.plan import Plan, is_secret, reveal, run_program
from tests.conftest import container, envs_of, gateway_config, pulls
from tests.standins.server import base_url, start_in_thread
from tests.standins.speaches import HubCache, SpeachesApp, SpeachesSettings

WHISPER = {"name": "whisper", "model": "Systran/faster-whisper-small", "mode": "transcription"}
PIPER = {"name": "piper", "model": "speaches-ai/piper-fr_FR-siwis-medium", "mode": "speech"}


def plan_with(**changes) -> Plan:
    return run_program({"speaches": {"gpus": "all", "models": [WHISPER, PIPER], **changes}})


@pytest.fixture(scope="module")
def plan() -> Plan:
    return plan_with()


@pytest.fixture(scope="module")
def cpu_plan() -> Plan:
    return run_program({"speaches": {"models": [WHISPER]}})




def test_cuda_variant_with_gpus(plan):
    assert plan.named("speaches-image").inputs == {"name": speaches.CUDA_IMAGE, "keepLocally": True}
    c = container(plan, "speaches").inputs
    assert c["deviceRequests"] == [{"driver": "nvidia", "capabilities": ["gpu"], "count": -1}]
    assert envs_of(container(plan, "speaches"))["WHISPER__INFERENCE_DEVICE"] == "cuda"


def test_device_ids_request_exactly_those_gpus():
    assert container(plan_with(gpus=["1"]), "speaches").inputs["deviceRequests"] == [
        {"driver": "nvidia", "capabilities": ["gpu"], "deviceIds": ["1"]}
    ]


def test_cpu_variant_without_gpus(cpu_plan):
    assert cpu_plan.named("speaches-image").inputs["name"] == speaches.CPU_IMAGE
    assert "deviceRequests" not in container(cpu_plan, "speaches").inputs
    assert envs_of(container(cpu_plan, "speaches"))["WHISPER__INFERENCE_DEVICE"] == "cpu"


def test_image_override():
    assert plan_with(image="ghcr.io/speaches-ai/speaches:0.8.4-cuda").named("speaches-image").inputs["name"] == (
        "ghcr.io/speaches-ai/speaches:0.8.4-cuda"
    )


def test_envs_sorted_with_a_secret_generated_key(plan):
    envs = container(plan, "speaches").inputs["envs"]
    assert is_secret(envs)
    names = [e.split("=", 1)[0] for e in reveal(envs)]
    assert names == sorted(names) == ["API_KEY", "ENABLE_UI", "WHISPER__INFERENCE_DEVICE"]
    assert envs_of(container(plan, "speaches"))["ENABLE_UI"] == "false"
    assert len(envs_of(container(plan, "speaches"))["API_KEY"]) == 40
    assert plan.named("speaches-api-key").type == "random:index/randomPassword:RandomPassword"


def test_runs_the_images_own_command(plan):
    c = container(plan, "speaches").inputs
    assert c.get("command", []) == []
    assert c["networksAdvanced"] == [{"name": "dev-llm", "aliases": ["speaches"]}]
    assert "ports" not in c


def test_hub_cache_is_retained_where_the_image_user_owns_it(plan):
    volume = plan.named("speaches-hf-hub")
    assert volume.retain_on_delete
    assert volume.inputs["name"] == "dev-speaches-hf-hub"
    # The Dockerfile creates this directory as uid 1000, so a fresh named volume mounted here is writable by it.
    assert container(plan, "speaches").inputs["volumes"] == [
        {"volumeName": "dev-speaches-hf-hub", "containerPath": "/home/ubuntu/.cache/huggingface/hub"}
    ]


def test_healthcheck_reads_the_key_from_the_container_env(plan):
    c = container(plan, "speaches")
    tests = c.inputs["healthcheck"]["tests"]
    assert tests == [
        "CMD-SHELL",
        'curl -fsS -o /dev/null -H "Authorization: Bearer $API_KEY" http://localhost:8000/health',
    ]
    assert c.inputs["healthcheck"]["startPeriod"] == speaches.HEALTH_START_PERIOD
    assert c.inputs["wait"] is True and c.inputs["restart"] == "unless-stopped"
    assert c.replace_on_changes == ["healthcheck"]


def test_the_key_appears_only_in_the_secret_envs(plan):
    key = envs_of(container(plan, "speaches"))["API_KEY"]
    others = {k: v for k, v in reveal(container(plan, "speaches").inputs).items() if k != "envs"}
    assert key not in json.dumps(others)
    for pull in pulls(plan, "speaches"):
        assert key not in json.dumps(reveal(pull.inputs))




def test_one_download_per_model_after_the_container(plan):
    speaches_container = container(plan, "speaches")
    found = pulls(plan, "speaches")
    assert [p.name for p in found] == [
        "speaches-pull-Systran-faster-whisper-small",
        "speaches-pull-speaches-ai-piper-fr_FR-siwis-medium",
    ]
    for pull, model_id in zip(found, ["Systran/faster-whisper-small", "speaches-ai/piper-fr_FR-siwis-medium"]):
        args: model_pull.ModelPullArgs = {
            "docker_host": "unix:///var/run/docker.sock",
            "ssh_opts": [],
            "container_name": "dev-speaches",
            "container_id": "speaches-id",
            "model": model_id,
            "pull": speaches.pull_argv(model_id),
            "remove": speaches.remove_argv(model_id),
        }
        assert pull.inputs["create"] == model_pull.pull_script(args, "speaches-id")
        assert pull.inputs["delete"] == model_pull.remove_script(args, "speaches-id")
        assert pull.inputs["triggers"] == ["unix:///var/run/docker.sock", "dev-speaches", model_id]
        assert speaches_container.urn in pull.depends_on
        assert "exec speaches-id sh -c" in pull.inputs["create"] and "-X POST" in pull.inputs["create"]
        assert "exec speaches-id sh -c" in pull.inputs["delete"] and "-X DELETE" in pull.inputs["delete"]


def test_model_entries_reach_speaches_with_its_key(plan):
    assert gateway_config(plan)["model_list"] == [
        {
            "model_name": "piper",
            "litellm_params": {
                "model": "openai/speaches-ai/piper-fr_FR-siwis-medium",
                "api_base": "http://speaches:8000/v1",
                "api_key": "os.environ/SPEACHES_API_KEY",
            },
            "model_info": {"mode": "audio_speech"},
        },
        {
            "model_name": "whisper",
            "litellm_params": {
                "model": "openai/Systran/faster-whisper-small",
                "api_base": "http://speaches:8000/v1",
                "api_key": "os.environ/SPEACHES_API_KEY",
            },
            "model_info": {"mode": "audio_transcription"},
        },
    ]
    assert "SPEACHES_API_KEY=" + envs_of(container(plan, "speaches"))["API_KEY"] in reveal(container(plan, "gateway").inputs["envs"])


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        speaches.model_entries([{"name": "x", "model": "m", "mode": "transcription"}], "http://speaches:8000/v1", "K")  # type: ignore[typeddict-item]


# --- the in-container scripts, run against the stand-in (0.8.3's API, with API_KEY set) ------


KEY = "test-key-" + "0" * 8


@pytest.fixture
def server(tmp_path: Path):
    app = SpeachesApp(SpeachesSettings("127.0.0.1", 0, KEY, ()), HubCache(tmp_path / "hub"))
    running = start_in_thread(app)
    yield base_url(running), app
    running.shutdown()
    running.server_close()


def run_in_container(argv: list[str], url: str, api_key: str = KEY) -> subprocess.CompletedProcess:
    """Runs an in-container argv locally, the server's address swapped for the stand-in's; $API_KEY from the env."""
    local = [a.replace(f"http://localhost:{speaches.PORT}", url) for a in argv]
    return subprocess.run(local, env={"PATH": "/usr/bin:/bin", "API_KEY": api_key}, capture_output=True, text=True, timeout=30)


def test_healthcheck_passes_with_the_key_and_fails_without(server):
    url, _ = server
    check = speaches.HEALTH_TEST[1]
    assert run_in_container(["sh", "-c", check], url).returncode == 0
    assert run_in_container(["sh", "-c", check], url, api_key="wrong").returncode != 0


def test_download_then_already_there_then_remove(server):
    url, app = server
    model = "Systran/faster-whisper-tiny"
    first = run_in_container(speaches.pull_argv(model), url)
    assert first.returncode == 0, first.stderr
    assert app.cache.has(model)
    again = run_in_container(speaches.pull_argv(model), url)
    assert again.returncode == 0 and "already exists" in again.stdout
    removed = run_in_container(speaches.remove_argv(model), url)
    assert removed.returncode == 0, removed.stderr
    assert not app.cache.has(model)
    absent = run_in_container(speaches.remove_argv(model), url)
    assert absent.returncode == 0 and "was not on the server" in absent.stdout


def test_unknown_model_fails_with_the_servers_answer(server):
    url, _ = server
    result = run_in_container(speaches.pull_argv("org/does-not-exist"), url)
    assert result.returncode != 0
    assert "POST /v1/models/org/does-not-exist answered HTTP 404" in result.stderr
    assert "not found" in result.stderr


def test_wrong_key_fails_loudly(server):
    url, _ = server
    for argv in (speaches.pull_argv("Systran/faster-whisper-tiny"), speaches.remove_argv("Systran/faster-whisper-tiny")):
        result = run_in_container(argv, url, api_key="wrong")
        assert result.returncode != 0 and "HTTP 403" in result.stderr


def test_unreachable_server_fails_loudly():
    result = run_in_container(speaches.pull_argv("Systran/faster-whisper-tiny"), "http://127.0.0.1:9")
    assert result.returncode != 0 and "curl" in result.stderr

