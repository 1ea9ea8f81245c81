"""The engine components used as a library: built directly under mocks, no stack file, each exposing the same outputs."""

import pulumi
import pulumi_docker as docker
import pytest

from components import InfinityServer, OllamaServer, SpeachesServer, VllmServer
from components.engine import EngineServer
from config.plan import is_secret, reveal, run_under_mocks
from tests.conftest import container, envs_of

SHARED_OUTPUTS = ("api_base", "container_name", "model_entries", "backend_keys")


def build(make) -> tuple[dict, object]:
    """Runs a program that builds one component with its own provider and network; returns its exported outputs and the plan."""

    def body() -> None:
        provider = docker.Provider("host", host="unix:///var/run/docker.sock")
        network = docker.Network("net", name="llm", opts=pulumi.ResourceOptions(provider=provider))
        server = make(network.name, pulumi.ResourceOptions(providers={"docker": provider}))
        assert isinstance(server, EngineServer)
        for name in SHARED_OUTPUTS:
            pulumi.export(name, getattr(server, name))

    plan = run_under_mocks(body, {}, [])
    return plan.outputs, plan


ENGINES = {
    "vllm": lambda net, opts: VllmServer("chat", {"served_model_name": "chat", "model": "org/chat", "network_name": net, "gpus": ["0"]}, opts),
    "ollama": lambda net, opts: OllamaServer(
        "ollama", {"network_name": net, "docker_host": "unix:///var/run/docker.sock", "models": [{"name": "small", "model": "qwen2.5:0.5b"}]}, opts
    ),
    "infinity": lambda net, opts: InfinityServer(
        "emb", {"network_name": net, "models": [{"name": "e", "model": "org/embed", "mode": "embedding"}], "container_name": "emb"}, opts
    ),
    "speaches": lambda net, opts: SpeachesServer(
        "audio",
        {
            "network_name": net,
            "docker_host": "ssh://deploy@gpu-01",
            "models": [{"name": "w", "model": "Systran/faster-whisper-tiny", "mode": "audio_transcription"}],
        },
        opts,
    ),
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_engine_exposes_the_shared_outputs(engine):
    outputs, plan = build(ENGINES[engine])
    assert set(SHARED_OUTPUTS) <= set(outputs)
    [entry] = outputs["model_entries"]
    assert outputs["api_base"] == entry["api_base"]
    host = entry["api_base"].split("//", 1)[1].split(":", 1)[0]
    assert outputs["container_name"] == host  # the gateway reaches the container by its name
    keys = reveal(outputs["backend_keys"])
    if engine == "ollama":
        assert keys == {} and "api_key_env" not in entry  # no authentication: never published
    else:
        [(env, key)] = keys.items()
        assert env == entry["api_key_env"] and len(key) >= 32
        assert is_secret(outputs["backend_keys"])
    # Every engine gets the same container conventions from the one builder: pinned image id,
    # a retained data volume, a healthcheck `pulumi up` waits for, restart, labels.
    [engine_container] = [r for r in plan.of_type("docker:index/container:Container")]
    [volume] = plan.of_type("docker:index/volume:Volume")
    assert volume.retain_on_delete
    assert engine_container.inputs["volumes"][0]["volumeName"] == volume.inputs["name"]
    assert engine_container.inputs["wait"] is True and engine_container.inputs["restart"] == "unless-stopped"
    assert engine_container.inputs["image"].startswith("sha256:")
    assert "healthcheck" in engine_container.replace_on_changes
    labels = {label["label"]: label["value"] for label in engine_container.inputs["labels"]}
    assert labels["llmstack.component"] == engine
    if engine != "ollama":
        assert is_secret(engine_container.inputs["envs"])
        assert any(e.endswith("=" + next(iter(keys.values()))) for e in reveal(engine_container.inputs["envs"]))


def test_a_given_key_is_used_and_kept_secret():
    def make(net, opts):
        return InfinityServer("emb", {"network_name": net, "models": [{"name": "e", "model": "org/e", "mode": "embedding"}], "api_key": "k" * 40}, opts)

    outputs, plan = build(make)
    assert is_secret(outputs["backend_keys"]) and reveal(outputs["backend_keys"]) == {"INFINITY_API_KEY": "k" * 40}
    assert not plan.of_type("random:index/randomPassword:RandomPassword")
    assert envs_of(container(plan, "emb"))["INFINITY_API_KEY"] == "k" * 40


def test_the_pulls_of_a_library_ollama_run_on_its_docker_host():
    _, plan = build(ENGINES["ollama"])
    [pull] = plan.of_type("command:local:Command")
    assert pull.name == "ollama-pull-qwen2.5-0.5b"
    assert "docker -H unix:///var/run/docker.sock exec ollama-id ollama pull qwen2.5:0.5b" in reveal(pull.inputs["create"])
    assert pull.depends_on == [container(plan, "ollama").urn]
