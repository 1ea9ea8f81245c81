"""Engines on several hosts: replicas, the relay in front of a remote host's engines, and what removing a host deletes."""

import copy
import pytest

from config.cli import resource_hosts
from config.placement import replica_suffix
from config.plan import is_secret, run_program
from config.plan_diff import DELETE, diff_plans, effective
from config.source import from_stack_file
from config.validation import check_stack
from tests.conftest import ROOT, container, envs_of, gateway_config

EXAMPLE = ROOT / "examples" / "Pulumi.two-hosts.yaml"
CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"


@pytest.fixture(scope="module")
def raw() -> dict:
    return from_stack_file(EXAMPLE)


@pytest.fixture(scope="module")
def plan(raw):
    return run_program(raw, stack="two-hosts")


def host_of(plan, resource) -> str:
    """The host under llmstack:hosts of a resource's Docker provider."""
    return resource.provider.removeprefix("host-")


def caddyfile_of(relay) -> str:
    return next(u["content"] for u in relay.revealed()["uploads"] if u["file"] == "/etc/caddy/Caddyfile")


def test_each_replica_is_its_own_container_named_after_its_host(plan):
    qwen3, remote = container(plan, "qwen3"), container(plan, "qwen3-gpu-02")
    assert (host_of(plan, qwen3), host_of(plan, remote)) == ("gpu-01", "gpu-02")
    assert qwen3.inputs["name"] == "two-hosts-qwen3" and remote.inputs["name"] == "two-hosts-qwen3-gpu-02"
    assert [a for n in remote.inputs["networksAdvanced"] for a in n["aliases"]] == ["qwen3-gpu-02"]
    # Each on its own GPU of its host, each with its own key.
    assert qwen3.inputs["deviceRequests"][0]["deviceIds"] == ["0"] == remote.inputs["deviceRequests"][0]["deviceIds"]
    assert envs_of(qwen3)["VLLM_API_KEY"] != envs_of(remote)["VLLM_API_KEY"]


def test_no_engine_publishes_a_port_and_the_relay_publishes_one_on_the_hosts_address(plan):
    engines = [r for r in plan.of_type(CONTAINER) if r.name in ("qwen3", "qwen3-gpu-02", "infinity")]
    assert len(engines) == 3 and all(not r.inputs.get("ports") for r in engines)
    relay = container(plan, "relay-gpu-02")
    assert host_of(plan, relay) == "gpu-02"
    assert [{k: p[k] for k in ("internal", "external", "ip")} for p in relay.inputs["ports"]] == [
        {"internal": 8443, "external": 8443, "ip": "10.0.0.12"}
    ]
    # Nothing else on gpu-02 publishes anything.
    others = [r for r in plan.of_type(CONTAINER) if host_of(plan, r) == "gpu-02" and r.name != "relay-gpu-02"]
    assert others and all(not r.inputs.get("ports") for r in others)


def test_the_gateway_balances_over_both_replicas_and_reaches_the_remote_one_through_the_relay(plan):
    entries = [m for m in gateway_config(plan)["model_list"] if m["model_name"] == "qwen3"]
    assert sorted(m["litellm_params"]["api_base"] for m in entries) == [
        "http://qwen3:8000/v1",
        "https://10.0.0.12:8443/qwen3-gpu-02/v1",
    ]
    keys = {m["litellm_params"]["api_base"]: m["litellm_params"]["api_key"] for m in entries}
    assert keys["https://10.0.0.12:8443/qwen3-gpu-02/v1"] == "os.environ/VLLM_QWEN3_GPU_02_API_KEY"
    # A model with several deployments is one model to clients.
    assert plan.outputs["toolModels"] == ["qwen3"] and plan.outputs["models"]["chat"] == ["qwen3"]
    embeddings = [m for m in gateway_config(plan)["model_list"] if m["model_name"] == "nomic"]
    assert [m["litellm_params"]["api_base"] for m in embeddings] == ["https://10.0.0.12:8443/infinity"]


def test_the_relay_checks_each_engines_own_key_held_as_secrets(plan):
    relay, gateway = container(plan, "relay-gpu-02"), container(plan, "gateway")
    assert all(is_secret(item) for item in relay.sent["envs"]), "every relay env is a key"
    relay_envs, gateway_envs = envs_of(relay), envs_of(gateway)
    assert relay_envs == {
        "KEY_INFINITY": gateway_envs["INFINITY_API_KEY"],
        "KEY_QWEN3_GPU_02": gateway_envs["VLLM_QWEN3_GPU_02_API_KEY"],
    }
    assert relay_envs["KEY_QWEN3_GPU_02"] == envs_of(container(plan, "qwen3-gpu-02"))["VLLM_API_KEY"]
    caddyfile = caddyfile_of(relay)
    for key in relay_envs.values():
        assert key not in caddyfile
    assert "handle_path /qwen3-gpu-02/*" in caddyfile and "reverse_proxy @gateway qwen3-gpu-02:8000" in caddyfile
    key_file = next(u for u in relay.sent["uploads"] if u["file"] == "/etc/caddy/tls/server.key")
    assert is_secret(key_file["content"])


def test_the_gateway_trusts_the_stack_ca_that_signed_the_relay(plan):
    gateway = container(plan, "gateway")
    assert envs_of(gateway)["SSL_CERT_FILE"] == "/etc/llmstack/stack-ca.pem"
    ca_upload = next(u["content"] for u in gateway.revealed()["uploads"] if u["file"] == "/etc/llmstack/stack-ca.pem")
    assert ca_upload == plan.outputs["caCertificate"]
    relay_cert = plan.named("relay-gpu-02-tls-cert")
    assert relay_cert.inputs["caCertPem"] == ca_upload
    request = plan.named("relay-gpu-02-tls-csr")
    assert request.inputs["ipAddresses"] == ["10.0.0.12"]
    # One CA for the relay and the edge.
    assert len([r for r in plan.resources if r.type == "tls:index/selfSignedCert:SelfSignedCert"]) == 1
    assert plan.named("edge-tls-cert").inputs["caCertPem"] == ca_upload


def test_an_ollama_away_from_the_gateway_gets_a_key_that_only_its_relay_checks(raw):
    config = copy.deepcopy(raw)
    config["ollama"] = {"host": "gpu-02", "models": [{"name": "vl", "model": "qwen2.5vl:7b"}]}
    plan = run_program(config, stack="two-hosts")
    relay, gateway = container(plan, "relay-gpu-02"), container(plan, "gateway")
    assert envs_of(relay)["KEY_OLLAMA"] == envs_of(gateway)["OLLAMA_API_KEY"]
    assert "OLLAMA_API_KEY" not in envs_of(container(plan, "ollama"))
    [entry] = [m for m in gateway_config(plan)["model_list"] if m["model_name"] == "vl"]
    assert entry["litellm_params"]["api_base"] == "https://10.0.0.12:8443/ollama"
    assert entry["litellm_params"]["api_key"] == "os.environ/OLLAMA_API_KEY"
    caddyfile = caddyfile_of(relay)
    ollama_route = caddyfile[caddyfile.index("handle_path /ollama/*") :]
    assert "header_up -Authorization" in ollama_route.split("handle_path", 2)[1]
    # The key is the engine's child: it goes when the engine goes.
    assert plan.named("ollama-relay-key").parent.endswith("OllamaServer::ollama")


def test_a_single_host_stack_has_no_relay_and_no_ca_file():
    plan = run_program(from_stack_file(ROOT / "Pulumi.dev.yaml"), stack="dev")
    assert not [r for r in plan.of_type(CONTAINER) if r.name.startswith("relay-")]
    assert "SSL_CERT_FILE" not in envs_of(container(plan, "gateway"))


def test_the_gpu_plan_counts_every_replica_on_its_host_and_gpu(raw):
    gpu_plan = check_stack(raw).gpu_plan
    rows = {(row.host, row.gpu): row.service for row in gpu_plan.rows}
    assert rows == {("gpu-01", "0"): "vllm/qwen3", ("gpu-02", "0"): "vllm/qwen3-gpu-02", ("gpu-02", "1"): "infinity"}
    assert gpu_plan.utilizations == {"qwen3": 0.85, "qwen3-gpu-02": 0.85}


def test_replica_names_follow_the_host_not_the_position():
    assert replica_suffix("gpu-01", ["0"], "gpu-01", ["gpu-01", "gpu-02"]) == ""
    assert replica_suffix("gpu-02", ["0"], "gpu-01", ["gpu-01", "gpu-02"]) == "gpu-02"
    assert replica_suffix("gpu-02", ["0", "1"], "gpu-01", ["gpu-02", "gpu-02"]) == "gpu-02-gpu0-1"


def test_removing_a_replica_deletes_only_its_resources_and_keeps_its_volume(raw, plan):
    config = copy.deepcopy(raw)
    config["vllm"][0]["replicas"] = [{"host": "gpu-01", "gpus": ["0"]}]
    after = run_program(config, stack="two-hosts")
    changes = effective(diff_plans(plan, after))
    deleted = {(c.type, c.name) for c in changes if c.action == DELETE}
    assert {name for _, name in deleted} == {
        "qwen3-gpu-02", "qwen3-gpu-02-image", "qwen3-gpu-02-hf-cache", "qwen3-gpu-02-api-key",
    }
    # The volume leaves the state but stays on the host (retainOnDelete); nothing else on either host changes
    # but the gateway (its model list), the relay (its routes) and the stack outputs.
    assert plan.named("qwen3-gpu-02-hf-cache").retain_on_delete
    others = {(c.action, c.name) for c in changes if c.action != DELETE and c.type == CONTAINER}
    assert others == {("replace", "gateway"), ("replace", "gateway-2"), ("replace", "relay-gpu-02")}
    assert not [c for c in changes if c.type == VOLUME and c.action != DELETE]


def test_removing_a_host_deletes_only_that_hosts_resources(raw, plan):
    config = copy.deepcopy(raw)
    del config["hosts"]["gpu-02"]
    config["vllm"][0]["replicas"] = [{"host": "gpu-01", "gpus": ["0"]}]
    config["infinity"].update(host="gpu-01", gpus=["0"], vramGiB=4)
    config["vllm"][0]["gpuMemoryUtilization"] = 0.8
    after = run_program(config, stack="two-hosts")
    changes = effective(diff_plans(plan, after))
    gone = [c for c in changes if c.action == DELETE]
    before = {(r.type, r.name): r for r in plan.resources}
    hosts = resource_hosts(plan)
    for change in gone:
        resource = before[(change.type, change.name)]
        # The relay's certificate lives in the state only, under the stack CA.
        assert hosts[resource.urn] == "gpu-02" or resource.name.startswith("relay-gpu-02-tls-"), change
    # Every retained volume of gpu-01 is untouched; those of gpu-02 leave the state and stay on gpu-02.
    assert not [c for c in changes if c.type == VOLUME and c.action != DELETE]
    assert all(before[(c.type, c.name)].retain_on_delete for c in gone if c.type == VOLUME)
    assert ("pulumi:providers:docker", "host-gpu-02") in {(c.type, c.name) for c in gone}


def test_config_check_summarises_engines_and_replicas_per_host():
    import io

    from config.cli import main

    out, err = io.StringIO(), io.StringIO()
    assert main(["check", str(EXAMPLE)], out=out, err=err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    start = lines.index("engines per host:")
    assert lines[start + 1 : start + 3] == [
        "  gpu-01 (gateway): vllm/qwen3 (replica 1 of 2) [gpus 0]",
        "  gpu-02 (relay on 10.0.0.12:8443): infinity [gpus 1], vllm/qwen3-gpu-02 (replica 2 of 2) [gpus 0]",
    ]


def test_config_check_names_the_relay_of_a_host_with_only_a_gpu_exporter(tmp_path):
    """A host with GPUs but no engine still gets a relay when Prometheus scrapes its GPU exporter; the
    per-host summary says so instead of calling it idle."""
    import io

    import yaml

    from config.cli import main

    stack = yaml.safe_load(EXAMPLE.read_text())
    config = stack["config"]
    config["llmstack:hosts"]["gpu-03"] = {
        "docker": "ssh://deploy@gpu-03", "address": "10.0.0.13", "gpus": [{"id": "0", "memoryGiB": 80}],
    }
    without = tmp_path / "Pulumi.without.yaml"
    without.write_text(yaml.safe_dump(stack))
    config["llmstack:monitoring"] = {"retention": "7d"}
    with_exporters = tmp_path / "Pulumi.with.yaml"
    with_exporters.write_text(yaml.safe_dump(stack))

    def gpu_03_line(path) -> str:
        out, err = io.StringIO(), io.StringIO()
        assert main(["check", str(path)], out=out, err=err) == 0, err.getvalue()
        return next(line for line in out.getvalue().splitlines() if line.startswith("  gpu-03 "))

    assert gpu_03_line(without) == "  gpu-03 (idle): no engine"
    assert gpu_03_line(with_exporters) == "  gpu-03 (relay on 10.0.0.13:8443): no engine"
