"""Prometheus, Grafana and GpuExporter under Pulumi's mocks: images, commands, retained volumes, uploads,
secrets never in plaintext, nothing published by default, determinism."""

from __future__ import annotations

import json

import pulumi
import pytest
import yaml

from components import alert_rules, dashboards, scrape_config
from components.gpu_exporter import GpuExporter
from components.grafana import Grafana
from components.prometheus import Prometheus
from config.plan import Plan, is_secret, reveal, run_under_mocks
from tests.test_monitoring_config import GPUS, MODELS, TARGETS

RELAY_TOKEN = "relay-token-0123456789abcdef"
SPEACHES_KEY = "speaches-key-0123456789abcdef"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CONTAINER = "docker:index/container:Container"


def monitoring_plan(**prometheus_changes) -> Plan:
    def program() -> None:
        prometheus = Prometheus(
            "prometheus",
            {
                "network_name": "llm",
                "targets": TARGETS,
                "credentials": {"relay-gpu-02": RELAY_TOKEN, "speaches": pulumi.Output.secret(SPEACHES_KEY)},
                "ca_certificates": {"stack-ca": CA_PEM},
                "retention": "30d",
                **prometheus_changes,
            },
        )
        Grafana("grafana", {"network_name": "llm", "prometheus_url": prometheus.internal_url, "models": MODELS, "gpus": GPUS})
        GpuExporter("dcgm-exporter", {"network_name": "llm"})
        pulumi.export("prometheusUrl", prometheus.internal_url)

    return run_under_mocks(program, {}, [])


@pytest.fixture(scope="module")
def plan() -> Plan:
    return monitoring_plan()


def container(plan: Plan, name: str):
    found = [r for r in plan.of_type(CONTAINER) if r.name == name]
    assert len(found) == 1, f"{len(found)} containers named {name}"
    return found[0]


def uploads(resource) -> dict:
    """Uploaded files, secrets revealed."""
    return {u["file"]: u["content"] for u in reveal(resource.inputs.get("uploads")) or []}


def test_pinned_images(plan):
    assert plan.named("prometheus-image").inputs == {"name": "prom/prometheus:v3.13.2", "keepLocally": True}
    assert plan.named("prometheus-blackbox-image").inputs["name"] == "prom/blackbox-exporter:v0.25.0"
    assert plan.named("grafana-image").inputs["name"] == "grafana/grafana:13.1.0"
    assert plan.named("dcgm-exporter-image").inputs["name"] == "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless"


def test_prometheus_command_retention_volume_and_healthcheck(plan):
    inputs = container(plan, "prometheus").inputs
    assert inputs["command"] == ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--storage.tsdb.retention.time=30d"]
    assert inputs["volumes"] == [{"volumeName": "prometheus-data", "containerPath": "/prometheus"}]
    assert plan.named("prometheus-data").retain_on_delete
    assert inputs["healthcheck"]["tests"] == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/healthy"]
    assert inputs["networksAdvanced"] == [{"name": "llm", "aliases": ["prometheus"]}]


def test_retention_defaults_to_15_days_and_is_checked():
    assert "--storage.tsdb.retention.time=15d" in container(monitoring_plan(retention=None), "prometheus").inputs["command"]
    with pytest.raises(ValueError, match="retention '2 weeks'"):
        monitoring_plan(retention="2 weeks")


def test_prometheus_uploads_the_generated_config_and_rules(plan):
    files = uploads(container(plan, "prometheus"))
    config = yaml.safe_load(files["/etc/prometheus/prometheus.yml"])
    assert config == yaml.safe_load(scrape_config.render_prometheus_config(TARGETS, blackbox_address="prometheus-blackbox:9115"))
    assert files["/etc/prometheus/rules/llmstack.yml"] == alert_rules.render_alert_rules()
    assert files["/etc/prometheus/credentials/relay-gpu-02"] == RELAY_TOKEN
    assert files["/etc/prometheus/ca/stack-ca.pem"] == CA_PEM


def test_credential_files_are_secrets_and_no_plaintext_token_anywhere(plan):
    # A secret file makes the container's whole `uploads` input secret (encrypted in state, hidden in a preview).
    for name in ("prometheus", "prometheus-blackbox"):
        assert is_secret(container(plan, name).inputs["uploads"])
        assert uploads(container(plan, name))["/etc/prometheus/credentials/speaches"] == SPEACHES_KEY
    token_holders = []
    for resource in plan.resources:
        text = json.dumps(_without_secrets(resource.inputs))
        if RELAY_TOKEN in text or SPEACHES_KEY in text:
            token_holders.append(resource.name)
    assert token_holders == []


def _without_secrets(value):
    if is_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def test_blackbox_probes_with_its_generated_config_and_only_when_needed(plan):
    inputs = container(plan, "prometheus-blackbox").inputs
    assert inputs["command"] == ["--config.file=/etc/blackbox_exporter/config.yml"]
    assert uploads(container(plan, "prometheus-blackbox"))["/etc/blackbox_exporter/config.yml"] == scrape_config.render_blackbox_config(TARGETS)
    assert "ports" not in inputs
    scraped_only = [t for t in TARGETS if t["engine"] in ("litellm", "vllm") and "bearer_token" not in t]
    bare = monitoring_plan(targets=scraped_only, credentials={}, ca_certificates={})
    assert [r.name for r in bare.of_type(CONTAINER) if r.name.startswith("prometheus")] == ["prometheus"]
    # Without credentials nothing is secret: the generated config stays reviewable in a preview.
    assert not is_secret(container(bare, "prometheus").inputs["uploads"])


def test_a_credential_the_targets_name_but_nobody_gave_is_an_error():
    with pytest.raises(ValueError, match="bearer token 'relay-gpu-02', CA certificate 'stack-ca'"):
        monitoring_plan(credentials={"speaches": "k"}, ca_certificates={})


def test_nothing_is_published_by_default_and_a_bind_port_is_loopback_only(plan):
    for name in ("prometheus", "prometheus-blackbox", "grafana", "dcgm-exporter"):
        assert "ports" not in container(plan, name).inputs, name
    published = container(monitoring_plan(bind_port=19090), "prometheus").inputs["ports"]
    assert published == [{"internal": 9090, "external": 19090, "ip": "127.0.0.1"}]


def test_grafana_password_is_a_generated_secret_env(plan):
    inputs = container(plan, "grafana").inputs
    assert is_secret(inputs["envs"])
    envs = reveal(inputs["envs"])
    names = [e.split("=", 1)[0] for e in envs]
    assert names == sorted(names) and "GF_SECURITY_ADMIN_PASSWORD" in names
    password = next(e.split("=", 1)[1] for e in envs if e.startswith("GF_SECURITY_ADMIN_PASSWORD="))
    assert len(password) == 32
    assert plan.named("grafana-admin-password").type == "random:index/randomPassword:RandomPassword"
    # The plaintext appears nowhere outside a secret.
    assert all(password not in json.dumps(_without_secrets(r.inputs)) for r in plan.resources if r.type != "random:index/randomPassword:RandomPassword")


def test_grafana_volume_healthcheck_and_provisioning(plan):
    inputs = container(plan, "grafana").inputs
    assert inputs["volumes"] == [{"volumeName": "grafana-data", "containerPath": "/var/lib/grafana"}]
    assert plan.named("grafana-data").retain_on_delete
    assert inputs["healthcheck"]["tests"] == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/api/health"]
    assert uploads(container(plan, "grafana")) == dashboards.provisioning_files("http://prometheus:9090", MODELS, GPUS)


def test_gpu_exporter_gets_every_gpu_and_publishes_nothing(plan):
    inputs = container(plan, "dcgm-exporter").inputs
    assert inputs["deviceRequests"] == [{"driver": "nvidia", "capabilities": ["gpu"], "count": -1}]
    assert inputs["networksAdvanced"] == [{"name": "llm", "aliases": ["dcgm-exporter"]}]
    assert inputs["restart"] == "unless-stopped"


def test_same_inputs_on_every_run(plan):
    def recorded(p: Plan) -> list:
        # Registration order follows Output resolution, which varies; the set of inputs must not.
        return sorted(((r.type, r.name, json.dumps(r.inputs, sort_keys=True)) for r in p.resources))

    assert recorded(monitoring_plan()) == recorded(plan)
