"""`llmstack:monitoring` in a stack: the scrape targets, probes, dashboards and GPU panels come from the stack file and
its engines; the gateway exports its metrics; the uploaded files pass the real promtool; secrets stay secret."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components import alert_rules, litellm_metrics, scrape_config
from config import monitoring
from config.plan import Plan, is_secret, reveal, run_program
from config.source import from_stack_file
from config.validation import check_stack
from tests.conftest import ROOT, container, envs_of, gateway_config

PROD = from_stack_file(ROOT / "Pulumi.prod.yaml")
DEV = from_stack_file(ROOT / "Pulumi.dev.yaml")
CONTAINER = "docker:index/container:Container"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus package (promtool) is not installed")


def plan_of(raw: dict, stack: str = "prod") -> Plan:
    return run_program(raw, stack=stack)


@pytest.fixture(scope="module")
def prod() -> Plan:
    return plan_of(PROD)


def uploads(resource) -> dict[str, str]:
    return {u["file"]: u["content"] for u in reveal(resource.inputs.get("uploads")) or []}


def prometheus_config(plan: Plan) -> dict:
    return yaml.safe_load(uploads(container(plan, "prometheus"))[scrape_config.CONFIG_FILE])


def jobs(plan: Plan) -> dict[str, dict]:
    return {job["job_name"]: job for job in prometheus_config(plan)["scrape_configs"]}


def with_monitoring(raw: dict, settings=True) -> dict:
    changed = copy.deepcopy(raw)
    changed["monitoring"] = settings
    return changed


def test_every_engine_the_gateway_and_the_gpu_exporter_are_watched_with_their_labels(prod):
    found = jobs(prod)
    assert sorted(found) == [
        "dcgm/gpu-01/gpus/0",
        "infinity/gpu-01/infinity/0",
        # prod runs two gateway replicas behind the edge: each is scraped on its own listener.
        "litellm/gpu-01/gateway/1",
        "litellm/gpu-01/gateway/2",
        "ollama/gpu-01/ollama/0",
        "speaches/gpu-01/speaches/0",
        "vllm/gpu-01/qwen3/0",
    ]
    for name, job in found.items():
        engine, host, model, replica = name.split("/")
        [static] = job["static_configs"]
        assert static["labels"] == {"engine": engine, "host": host, "model": model, "replica": replica}
    # Addresses are the network aliases of each engine's api_base; the gateway's key-less metrics listener.
    scraped = {name: (job["static_configs"][0]["targets"], job.get("metrics_path")) for name, job in found.items() if job.get("metrics_path") != "/probe"}
    assert scraped == {
        "dcgm/gpu-01/gpus/0": (["dcgm-exporter:9400"], "/metrics"),
        "infinity/gpu-01/infinity/0": (["infinity:7997"], "/metrics"),
        "litellm/gpu-01/gateway/1": (["litellm-1:4001"], "/metrics/"),
        "litellm/gpu-01/gateway/2": (["litellm-2:4001"], "/metrics/"),
        "vllm/gpu-01/qwen3/0": (["qwen3:8000"], "/metrics"),
    }
    probed = {name: job["static_configs"][0]["targets"] for name, job in found.items() if job.get("metrics_path") == "/probe"}
    assert probed == {"ollama/gpu-01/ollama/0": ["http://ollama:11434/api/version"], "speaches/gpu-01/speaches/0": ["http://speaches:8000/health"]}


def test_docker_names_are_scoped_by_the_stack_and_aliases_are_not(prod):
    expected = {"prometheus": "prometheus", "prometheus-blackbox": "prometheus-blackbox", "grafana": "grafana",
                "gpu-exporter-gpu-01": "dcgm-exporter"}
    for resource, alias in expected.items():
        inputs = container(prod, resource).inputs
        assert inputs["name"] == f"prod-{alias}"
        assert [n["aliases"] for n in reveal(inputs["networksAdvanced"])] == [[alias]]
    assert prod.named("prometheus-data").inputs["name"] == "prod-prometheus-data"
    assert prod.named("grafana-data").inputs["name"] == "prod-grafana-data"


def test_the_speaches_probe_sends_its_key_from_a_secret_file(prod):
    blackbox = container(prod, "prometheus-blackbox")
    files = uploads(blackbox)
    modules = yaml.safe_load(files[scrape_config.BLACKBOX_CONFIG_FILE])["modules"]
    auth = modules["speaches_gpu_01_speaches_0"]["http"]["authorization"]
    token = files[auth["credentials_file"]]
    assert token == envs_of(container(prod, "speaches"))["API_KEY"]
    assert "authorization" not in modules["ollama_gpu_01_ollama_0"]["http"]
    # The key file makes the uploads secret on both containers; the config files name the file, not the key.
    for name in ("prometheus", "prometheus-blackbox"):
        assert is_secret(container(prod, name).inputs["uploads"]), name
        for path, content in uploads(container(prod, name)).items():
            if "/credentials/" not in path:
                assert token not in content, path


def test_the_gateway_exports_metrics_on_an_unpublished_listener(prod):
    gateway = container(prod, "gateway")
    assert gateway_config(prod)["litellm_settings"]["callbacks"] == ["prometheus"]
    envs = envs_of(gateway)
    assert envs[litellm_metrics.METRICS_PORT_ENV] == "4001"
    assert envs[litellm_metrics.MULTIPROC_DIR_ENV] == litellm_metrics.MULTIPROC_DIR
    # Port 4001 is never published; with the edge in front (prod), port 4000 is not either.
    assert not gateway.inputs.get("ports")
    plain = plan_of({**{k: v for k, v in PROD.items() if k not in ("edge",)}, "gateway": {"port": 4000}})
    assert [p["internal"] for p in reveal(container(plain, "gateway").inputs["ports"])] == [4000]


def test_without_the_key_nothing_is_watched_and_the_gateway_is_unchanged():
    plain = plan_of(DEV, "dev")
    assert not {c.name for c in plain.of_type(CONTAINER)} & {"prometheus", "prometheus-blackbox", "grafana", "gpu-exporter-local"}
    assert "callbacks" not in gateway_config(plain)["litellm_settings"]
    assert litellm_metrics.METRICS_PORT_ENV not in envs_of(container(plain, "gateway"))
    off = plan_of(with_monitoring(PROD, {"enabled": False, "retention": "30d"}))
    assert not {c.name for c in off.of_type(CONTAINER)} & {"prometheus", "grafana"}
    assert "grafanaAdminPassword" not in off.outputs


def test_a_stack_without_gpus_gets_no_exporter_and_no_gpu_dashboard():
    dev = plan_of(with_monitoring(DEV), "dev")
    assert not [c for c in dev.of_type(CONTAINER) if c.name.startswith("gpu-exporter")]
    assert not [j for j in jobs(dev) if j.startswith("dcgm/")]
    assert sorted(p.rsplit("/", 1)[1] for p in uploads(container(dev, "grafana")) if p.endswith(".json")) == ["gateway.json", "models.json"]


def test_retention_interval_ports_images_and_alert_limits_come_from_the_key():
    settings = {
        "retention": "90d",
        "scrapeInterval": "30s",
        "prometheus": {"port": 19090, "image": "prom/prometheus:v3.13.3", "blackboxImage": "prom/blackbox-exporter:v0.25.1"},
        "grafana": {"port": None, "image": "grafana/grafana:13.1.1"},
        "gpuExporter": {"image": "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-ubuntu22.04"},
        "alerts": {"kvCacheRatio": 0.8, "failureFor": "20m"},
    }
    # Without the edge (prod has one), so that the ports apply.
    plan = plan_of({k: v for k, v in with_monitoring(PROD, settings).items() if k != "edge"} | {"gateway": {"port": 4000}})
    prometheus = container(plan, "prometheus")
    assert "--storage.tsdb.retention.time=90d" in prometheus.inputs["command"]
    assert prometheus_config(plan)["global"]["scrape_interval"] == "30s"
    assert reveal(prometheus.inputs["ports"]) == [{"internal": 9090, "external": 19090, "ip": "127.0.0.1"}]
    assert not container(plan, "grafana").inputs.get("ports")
    assert plan.named("prometheus-image").inputs["name"] == "prom/prometheus:v3.13.3"
    assert plan.named("prometheus-blackbox-image").inputs["name"] == "prom/blackbox-exporter:v0.25.1"
    assert plan.named("grafana-image").inputs["name"] == "grafana/grafana:13.1.1"
    assert plan.named("gpu-exporter-gpu-01-image").inputs["name"] == settings["gpuExporter"]["image"]
    rules = {r["alert"]: r for r in yaml.safe_load(uploads(prometheus)[f"{scrape_config.RULES_DIR}/{alert_rules.RULES_FILE_NAME}"])["groups"][0]["rules"]}
    assert rules["KvCacheNearlyFull"]["expr"] == "vllm:kv_cache_usage_perc > 0.8"
    assert rules["GatewayFailureRatioHigh"]["for"] == "20m"
    assert rules["TargetDown"]["for"] == "2m"  # a limit left out keeps its default
    assert plan.outputs["prometheusUrl"] == "http://127.0.0.1:19090" and "grafanaUrl" not in plan.outputs
    # With the edge (prod), Grafana is served through it at /grafana/ and Prometheus is not published at all.
    edged = plan_of(with_monitoring(PROD, settings))
    assert not container(edged, "prometheus").inputs.get("ports") and not container(edged, "grafana").inputs.get("ports")
    assert "prometheusUrl" not in edged.outputs and edged.outputs["grafanaUrl"] == "https://gpu-01/grafana/"


def test_defaults_and_the_true_shorthand(prod):
    plan = plan_of(with_monitoring(PROD, True))
    assert "--storage.tsdb.retention.time=15d" in container(plan, "prometheus").inputs["command"]
    assert prometheus_config(plan)["global"]["scrape_interval"] == "15s"
    assert plan.outputs["grafanaUrl"] == "https://gpu-01/grafana/" and "prometheusUrl" not in plan.outputs
    no_edge = plan_of({k: v for k, v in with_monitoring(PROD, True).items() if k not in ("edge",)} | {"gateway": {"port": 4000}})
    assert no_edge.outputs["grafanaUrl"] == "http://127.0.0.1:3001"  # 3000 is Open WebUI's
    assert no_edge.outputs["prometheusUrl"] == "http://127.0.0.1:9090"
    assert plan.named("prometheus-data").retain_on_delete and plan.named("grafana-data").retain_on_delete


def test_grafana_password_is_a_secret_output(prod):
    assert is_secret(prod.outputs["grafanaAdminPassword"])
    password = reveal(prod.outputs["grafanaAdminPassword"])
    assert len(password) >= 32
    assert envs_of(container(prod, "grafana"))["GF_SECURITY_ADMIN_PASSWORD"] == password
    envs = container(prod, "grafana").inputs["envs"]
    assert is_secret(envs) or all(is_secret(e) for e in envs if "PASSWORD" in json.dumps(e))


def test_dashboards_have_every_model_and_the_gpu_plans_reservation(prod):
    files = uploads(container(prod, "grafana"))
    models = json.loads(files["/etc/grafana/dashboards/llmstack/models.json"])
    rows = sorted(p["title"] for p in models["panels"] if p["type"] == "row")
    assert rows == [
        "bge-reranker (infinity)", "nomic (infinity)", "piper (speaches)", "qwen2.5-vl (ollama)", "qwen3 (vllm)", "whisper (speaches)"
    ]
    exprs = [t["expr"] for p in models["panels"] for t in p.get("targets", [])]
    assert any('model="infinity"' in e for e in exprs) and any('model="qwen3"' in e for e in exprs)
    gpus = json.loads(files["/etc/grafana/dashboards/llmstack/gpus.json"])
    memory = next(p for p in gpus["panels"] if p["title"] == "gpu-01 GPU 0: memory used vs reserved")
    lines = {t["legendFormat"]: t["expr"] for t in memory["targets"]}
    # vLLM 0.75 x 80 + Ollama 8 + Infinity 4 + Speaches 3, plus 1 GiB of CUDA context each: 79 GiB.
    assert lines["reserved by the GPU plan"] == f"vector({79 * 1024})"
    assert lines["card"] == f"vector({80 * 1024})"
    datasource = yaml.safe_load(files["/etc/grafana/provisioning/datasources/llmstack.yaml"])
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_a_new_model_is_scraped_and_drawn_without_editing_anything():
    raw = copy.deepcopy(PROD)
    raw["hosts"]["gpu-01"]["gpus"].append({"id": "1", "memoryGiB": 48})
    raw["vllm"].append({"name": "qwen3-coder", "model": "Qwen/Qwen3-Coder-7B", "gpus": ["1"], "gpuMemoryUtilization": 0.5})
    plan = plan_of(raw)
    assert jobs(plan)["vllm/gpu-01/qwen3-coder/0"]["static_configs"][0]["targets"] == ["qwen3-coder:8000"]
    files = uploads(container(plan, "grafana"))
    assert "qwen3-coder (vllm)" in [p["title"] for p in json.loads(files["/etc/grafana/dashboards/llmstack/models.json"])["panels"]]
    assert "gpu-01 GPU 1 (vllm/qwen3-coder)" in [p["title"] for p in json.loads(files["/etc/grafana/dashboards/llmstack/gpus.json"])["panels"]]


def test_the_plan_is_the_same_on_every_run(prod):
    def recorded(plan: Plan) -> list:
        # Registration order follows Output resolution, which varies; the inputs must not.
        return sorted((r.type, r.name, json.dumps(r.inputs, sort_keys=True)) for r in plan.resources)

    assert recorded(plan_of(PROD)) == recorded(prod)


@needs_promtool
def test_promtool_accepts_the_uploaded_config_rules_and_credentials(prod, tmp_path: Path):
    """The files exactly as uploaded, laid out under a temporary /etc/prometheus."""
    files = uploads(container(prod, "prometheus"))
    for path, content in files.items():
        local = tmp_path / Path(path).relative_to(scrape_config.CONFIG_DIR)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(content.replace(scrape_config.CONFIG_DIR, str(tmp_path)))
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "1 rules found" not in checked.stdout


def test_gpu_hosts_are_those_listing_gpus_or_running_gpu_services():
    assert monitoring.gpu_hosts(check_stack(PROD).config) == ["gpu-01"]
    assert monitoring.gpu_hosts(check_stack(DEV).config) == []
    rehearsal = from_stack_file(ROOT / "tests" / "rehearsal" / "Pulumi.rehearsal.yaml")
    assert monitoring.gpu_hosts(check_stack(rehearsal).config) == ["local"]  # no inventory, but vLLM asks for GPU 0


def test_config_check_says_what_monitoring_deploys():
    assert monitoring.summary(check_stack(PROD).config) == (
        "monitoring: Prometheus on the stack network only, Grafana through the edge at /grafana/, GPU exporter on gpu-01"
    )
    assert monitoring.summary(check_stack(DEV).config) == "monitoring off"
    quiet = with_monitoring(DEV, {"grafana": {"port": None}})
    assert monitoring.summary(check_stack(quiet).config) == (
        "monitoring: Prometheus on 127.0.0.1:9090, Grafana on the stack network only, no GPU exporter"
    )
