"""`llmstack:edge`: the HTTPS edge in front of the gateway replicas, rendered from a stack and checked by the real Caddy."""

import re

import pytest

from components import caddy
from config.errors import StackConfigError
from config.plan import Plan, is_secret, reveal, run_program
from config.plan_diff import diff_plans, effective
from config.source import from_stack_file
from config.validation import check_stack
from tests import real_caddy
from tests.conftest import ROOT, container
from tests.stack_ca_files import make_ca, write_server_files

OLLAMA = {"models": [{"name": "small", "model": "qwen2.5:0.5b"}]}
CONTAINER = "docker:index/container:Container"


def published(plan: Plan) -> dict[str, list[dict]]:
    return {r.name: reveal(r.inputs["ports"]) for r in plan.of_type(CONTAINER) if r.inputs.get("ports")}


def uploaded(plan: Plan, name: str) -> dict[str, str]:
    return {u["file"]: u["content"] for u in reveal(container(plan, name).inputs["uploads"])}


@pytest.fixture(scope="module")
def prod() -> Plan:
    return run_program(from_stack_file(ROOT / "Pulumi.prod.yaml"), stack="prod")


def test_prod_publishes_only_https_through_the_edge(prod):
    # The edge alone publishes: the gateway and Grafana (/grafana/) on 443, Open WebUI on its own port (it wants
    # the root path); Prometheus (no login of its own) is not published at all.
    assert published(prod) == {
        "edge": [{"internal": 443, "external": 443, "ip": "0.0.0.0"}, {"internal": 3000, "external": 3000, "ip": "0.0.0.0"}],
    }
    assert prod.outputs["grafanaUrl"] == "https://gpu-01/grafana/" and prod.outputs["webuiUrl"] == "https://gpu-01:3000"
    webui_envs = dict(e.split("=", 1) for e in reveal(container(prod, "webui").inputs["envs"]))
    assert webui_envs["WEBUI_URL"] == "https://gpu-01:3000"
    caddyfile = uploaded(prod, "edge")[caddy.CADDYFILE_PATH]
    assert "@extra0 path /grafana /grafana/*" in caddyfile and "reverse_proxy grafana:3000" in caddyfile
    assert "https://:3000 {" in caddyfile and "reverse_proxy open-webui:8080" in caddyfile
    grafana_envs = dict(e.split("=", 1) for e in reveal(container(prod, "grafana").inputs["envs"]))
    assert grafana_envs["GF_SERVER_ROOT_URL"] == "https://gpu-01/grafana/" and grafana_envs["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    assert prod.outputs["gatewayUrl"] == "https://gpu-01"
    assert prod.outputs["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_prod_runs_two_gateway_replicas_the_edge_balances_over(prod):
    replicas = [container(prod, name) for name in ("gateway", "gateway-2")]
    # Named per generation (see test_a_model_change_rolls_the_replicas), labelled by replica.
    assert [re.sub(r"-[0-9a-f]{8}$", "", r.inputs["name"]) for r in replicas] == ["prod-litellm", "prod-litellm-2"]
    assert [instance_label(r) for r in replicas] == ["prod-litellm", "prod-litellm-2"]
    assert [reveal(r.inputs["networksAdvanced"])[0]["aliases"] for r in replicas] == [["litellm", "litellm-1"], ["litellm", "litellm-2"]]
    assert replicas[0].inputs["command"] == replicas[1].inputs["command"] == ["--config", "/app/config.yaml", "--port", "4000", "--num_workers", "2"]
    # One after the other: the second replica waits for the first to be healthy.
    assert replicas[0].urn in replicas[1].depends_on
    caddyfile = uploaded(prod, "edge")[caddy.CADDYFILE_PATH]
    assert "reverse_proxy litellm-1:4000 litellm-2:4000 {" in caddyfile
    assert "health_uri /health/readiness" in caddyfile and "flush_interval -1" in caddyfile


def instance_label(resource) -> str:
    return next(label["value"] for label in resource.inputs["labels"] if label["label"] == "llmstack.instance")


def test_a_model_change_rolls_the_replicas_and_every_other_container_is_replaced_in_place(prod):
    """Pulumi creates a replacement before deleting the old resource unless told otherwise, and deletes the replaced
    resources at the end: each replica gets a new name with each change, so its replacement starts (and passes its
    healthcheck) beside the old one, the next replica's replacement waits for it, and the old ones go last.
    Everything else has a fixed name (or a published port) and is removed before it is recreated."""
    raw = from_stack_file(ROOT / "Pulumi.prod.yaml")
    raw["ollama"]["models"].append({"name": "gemma3", "model": "gemma3:4b"})
    after = run_program(raw, stack="prod")
    changes = {(c.name, c.action) for c in effective(diff_plans(prod, after)) if c.type == "docker:index/container:Container"}
    # The new model is pulled into the running Ollama; the gateway replicas roll, Grafana gets its new dashboard.
    assert changes == {("gateway", "replace"), ("gateway-2", "replace"), ("grafana", "replace")}
    for name in ("gateway", "gateway-2"):
        before_replica, after_replica = container(prod, name), container(after, name)
        assert before_replica.inputs["name"] != after_replica.inputs["name"], "the new replica needs a name of its own"
        assert instance_label(before_replica) == instance_label(after_replica)
        assert not after_replica.delete_before_replace and not after_replica.inputs.get("ports")
        assert after_replica.inputs["destroyGraceSeconds"] == 120
    assert container(after, "gateway").urn in container(after, "gateway-2").depends_on
    others = [r for r in after.of_type("docker:index/container:Container") if r.name not in ("gateway", "gateway-2")]
    assert others and all(r.delete_before_replace for r in others)
    # The same config gives the same names: nothing rolls without a change.
    assert container(run_program(from_stack_file(ROOT / "Pulumi.prod.yaml"), stack="prod"), "gateway").inputs["name"] == container(prod, "gateway").inputs["name"]


def test_every_input_that_replaces_a_replica_gives_it_a_new_name(prod):
    """A replica created before its old container goes needs a name of its own whatever replaced it: the network too."""
    raw = from_stack_file(ROOT / "Pulumi.prod.yaml")
    raw["network"] = {"name": "llm2"}
    after = run_program(raw, stack="prod")
    for name in ("gateway", "gateway-2"):
        assert container(after, name).inputs["name"] != container(prod, name).inputs["name"]


def test_the_edge_key_is_a_secret_and_the_certificate_names_the_host(prod):
    edge = container(prod, "edge")
    files = uploaded(prod, "edge")
    assert set(files) == {caddy.CADDYFILE_PATH, caddy.CERT_FILE, caddy.KEY_FILE}
    # The private key never appears in plaintext in the container's inputs: the uploads carrying it are secret.
    assert is_secret(edge.inputs["uploads"]) or all(
        is_secret(u) or is_secret(u.get("content")) for u in edge.inputs["uploads"] if reveal(u)["file"] == caddy.KEY_FILE
    )
    assert "PRIVATE KEY" in files[caddy.KEY_FILE]
    csr = prod.named("edge-tls-csr")
    assert csr.inputs["dnsNames"] == ["gpu-01"] and "ipAddresses" not in csr.inputs
    assert prod.named("stack-ca-cert").inputs["isCaCertificate"] is True


def test_the_rendered_prod_caddyfile_passes_the_real_caddy(prod, tmp_path):
    tls = tmp_path / "tls"
    tls.mkdir()
    cert_pem, key_pem = make_ca().issue(["gpu-01"], [])
    write_server_files(tls, cert_pem, key_pem)
    caddyfile = uploaded(prod, "edge")[caddy.CADDYFILE_PATH]
    local = caddyfile.replace(caddy.CERT_FILE, str(tls / "server.crt")).replace(caddy.KEY_FILE, str(tls / "server.key"))
    done = real_caddy.validate(local, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_acme_publishes_https_and_http_with_no_stack_ca():
    plan = run_program({"ollama": OLLAMA, "edge": {"tls": "acme", "domain": "llm.example.com", "email": "ops@example.com"}})
    assert [p["external"] for p in published(plan)["edge"]] == [443, 80]
    assert plan.outputs["gatewayUrl"] == "https://llm.example.com" and "caCertificate" not in plan.outputs
    assert not [r for r in plan.resources if r.type.startswith("tls:")]
    caddyfile = uploaded(plan, "edge")[caddy.CADDYFILE_PATH]
    assert "email ops@example.com" in caddyfile and "Strict-Transport-Security" in caddyfile


def test_tls_off_is_plain_http_for_a_laptop():
    plan = run_program({"ollama": OLLAMA, "edge": {"tls": "off", "httpPort": 8080, "bind": "127.0.0.1"}})
    assert published(plan) == {"edge": [{"internal": 8080, "external": 8080, "ip": "127.0.0.1"}]}
    assert plan.outputs["gatewayUrl"] == "http://localhost:8080"


def test_an_ip_address_goes_into_the_certificate_as_an_address():
    plan = run_program({"ollama": OLLAMA, "edge": {"domain": "10.0.0.2"}})
    csr = plan.named("edge-tls-csr")
    assert csr.inputs["ipAddresses"] == ["10.0.0.2"] and "dnsNames" not in csr.inputs


@pytest.mark.parametrize(
    "raw, key, fix",
    [
        ({"gateway": {"replicas": 2}}, "llmstack:gateway.replicas", "add llmstack:edge"),
        ({"edge": {"tls": "acme", "email": "ops@example.com"}}, "llmstack:edge.domain", "set domain: llm.example.com"),
        ({"edge": {"tls": "acme", "domain": "10.0.0.2", "email": "ops@example.com"}}, "llmstack:edge.domain", "set domain"),
        ({"edge": {"tls": "acme", "domain": "llm.example.com"}}, "llmstack:edge.email", "set email"),
        ({"edge": {"tls": "internal", "email": "ops@example.com"}}, "llmstack:edge.email", "remove it, or set tls: acme"),
        ({"edge": {"domain": "llm.example.com/x?"}}, "llmstack:edge.domain", "write the name clients use"),
        ({"edge": {"tls": "https"}}, "llmstack:edge.tls", "internal"),
        ({"ollama": {"models": [{"name": "edge", "model": "qwen2.5:0.5b"}]}}, "llmstack:ollama.models[0].name", "choose another model name"),
    ],
)
def test_edge_mistakes_name_the_key_and_the_fix(raw, key, fix):
    with pytest.raises(StackConfigError) as error:
        check_stack({"ollama": OLLAMA, **raw})
    lines = [line for line in error.value.report().splitlines() if line.startswith(f"  - {key}:")]
    assert lines and any(fix in line for line in lines), error.value.report()
