"""Generated prometheus.yml, blackbox.yml, alert rules and dashboards: checked by the real promtool and
blackbox_exporter (Debian's packages), unit-tested alert rules, and every query naming catalogued metrics only."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components import alert_rules, dashboards, litellm_metrics, metrics_catalog, scrape_config
from tests.promql_names import dashboard_expressions, metric_names, rule_expressions

TARGETS: list[scrape_config.ScrapeTarget] = [
    {"engine": "litellm", "model": "gateway", "host": "gpu-01", "replica": "0", "address": "litellm:4001"},
    {"engine": "vllm", "model": "qwen3", "host": "gpu-01", "replica": "0", "address": "qwen3:8000"},
    # A replica on another host, reached through that host's relay with its key and the stack CA.
    {"engine": "vllm", "model": "qwen3", "host": "gpu-02", "replica": "1", "address": "10.0.0.2:8443", "scheme": "https",
     "path": "/qwen3/metrics", "bearer_token": "relay-gpu-02", "tls_ca": "stack-ca", "server_name": "relay.gpu-02"},
    {"engine": "infinity", "model": "infinity", "host": "gpu-01", "replica": "0", "address": "infinity:7997"},
    {"engine": "ollama", "model": "ollama", "host": "gpu-01", "replica": "0", "address": "ollama:11434"},
    {"engine": "speaches", "model": "speaches", "host": "gpu-01", "replica": "0", "address": "speaches:8000", "bearer_token": "speaches"},
    {"engine": "dcgm", "model": "gpus", "host": "gpu-01", "replica": "0", "address": "dcgm-exporter:9400"},
    {"engine": "dcgm", "model": "gpus", "host": "gpu-02", "replica": "0", "address": "10.0.0.2:8443", "scheme": "https",
     "path": "/dcgm/metrics", "bearer_token": "relay-gpu-02", "tls_ca": "stack-ca"},
]
MODELS: list[dashboards.DashboardModel] = [
    {"name": "qwen3", "engine": "vllm"},
    {"name": "qwen2.5-vl", "engine": "ollama", "server": "ollama"},
    {"name": "nomic", "engine": "infinity", "server": "infinity"},
    {"name": "bge-reranker", "engine": "infinity", "server": "infinity"},
    {"name": "whisper", "engine": "speaches", "server": "speaches"},
]
GPUS: list[dashboards.GpuReservation] = [
    {"host": "gpu-01", "gpu": "0", "memory_gib": 80, "reserved_gib": 78.6, "services": ["qwen3", "ollama"]},
    {"host": "gpu-02", "gpu": "0", "memory_gib": 80, "reserved_gib": 62},
]

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus package (promtool) is not installed")


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    """A directory laid out like /etc/prometheus in the container: config, rules, credentials, CA."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / alert_rules.RULES_FILE_NAME).write_text(alert_rules.render_alert_rules())
    (tmp_path / "credentials").mkdir()
    for name in ("relay-gpu-02", "speaches"):
        (tmp_path / "credentials" / name).write_text("test-token\n")
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "stack-ca.pem").write_text(self_signed_ca())
    (tmp_path / "prometheus.yml").write_text(
        scrape_config.render_prometheus_config(
            TARGETS, blackbox_address="prometheus-blackbox:9115", rule_files=[str(tmp_path / "rules" / "*.yml")], config_dir=str(tmp_path)
        )
    )
    (tmp_path / "blackbox.yml").write_text(scrape_config.render_blackbox_config(TARGETS, config_dir=str(tmp_path)))
    return tmp_path


def self_signed_ca() -> str:
    """A throwaway CA certificate (what pulumi-tls makes for the stack), PEM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmstack test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# --- the real tools ------------------------------------------------------------------------------


@needs_promtool
def test_promtool_accepts_the_generated_config_and_rules(config_dir):
    checked = run(["promtool", "check", "config", str(config_dir / "prometheus.yml")], config_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout + checked.stderr
    rules = run(["promtool", "check", "rules", str(config_dir / "rules" / alert_rules.RULES_FILE_NAME)], config_dir)
    assert rules.returncode == 0 and "SUCCESS: 5 rules found" in rules.stdout, rules.stdout + rules.stderr


@needs_promtool
def test_promtool_refuses_a_config_whose_credential_file_is_missing(config_dir):
    # The check is real: the relay's token file is read by Prometheus at load.
    (config_dir / "credentials" / "relay-gpu-02").unlink()
    checked = run(["promtool", "check", "config", str(config_dir / "prometheus.yml")], config_dir)
    assert checked.returncode != 0 and "relay-gpu-02" in checked.stdout + checked.stderr


@pytest.mark.skipif(shutil.which("prometheus-blackbox-exporter") is None, reason="Debian's prometheus-blackbox-exporter is not installed")
def test_blackbox_exporter_accepts_the_generated_probe_config(config_dir):
    checked = run(["prometheus-blackbox-exporter", f"--config.file={config_dir / 'blackbox.yml'}", "--config.check"], config_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    modules = yaml.safe_load((config_dir / "blackbox.yml").read_text())["modules"]
    assert sorted(modules) == ["ollama_gpu_01_ollama_0", "speaches_gpu_01_speaches_0"]
    assert modules["speaches_gpu_01_speaches_0"]["http"]["authorization"] == {
        "type": "Bearer", "credentials_file": str(config_dir / "credentials" / "speaches")
    }
    assert "authorization" not in modules["ollama_gpu_01_ollama_0"]["http"]


# promtool test rules: alerts fire (and only) when they should. Times are evaluation times.
RULE_TESTS = {
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                {"series": 'up{job="vllm/gpu-01/qwen3/0", instance="qwen3:8000", engine="vllm", model="qwen3", host="gpu-01", replica="0"}', "values": "0x10"},
                {"series": 'up{job="litellm/gpu-01/gateway/0", instance="litellm:4001", engine="litellm", model="gateway", host="gpu-01", replica="0"}', "values": "1x10"},
                {"series": 'probe_success{job="ollama/gpu-01/ollama/0", instance="http://ollama:11434/api/version", engine="ollama", model="ollama", host="gpu-01", replica="0"}', "values": "1 1 0x8"},
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "TargetDown", "exp_alerts": []},
                {
                    "eval_time": "3m",
                    "alertname": "TargetDown",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "critical", "job": "vllm/gpu-01/qwen3/0", "instance": "qwen3:8000", "engine": "vllm", "model": "qwen3", "host": "gpu-01", "replica": "0"},
                            "exp_annotations": {
                                "summary": "vllm qwen3 (replica 0) on gpu-01 is down",
                                "description": "Prometheus cannot scrape or probe qwen3:8000 (job vllm/gpu-01/qwen3/0) for 2m: the container is stopped, unhealthy or unreachable.",
                            },
                        }
                    ],
                },
                {
                    "eval_time": "5m",
                    "alertname": "TargetDown",
                    "exp_alerts": [
                        {"exp_labels": {"severity": "critical", "job": "ollama/gpu-01/ollama/0", "instance": "http://ollama:11434/api/version", "engine": "ollama", "model": "ollama", "host": "gpu-01", "replica": "0"},
                         "exp_annotations": {"summary": "ollama ollama (replica 0) on gpu-01 is down",
                                             "description": "Prometheus cannot scrape or probe http://ollama:11434/api/version (job ollama/gpu-01/ollama/0) for 2m: the container is stopped, unhealthy or unreachable."}},
                        {"exp_labels": {"severity": "critical", "job": "vllm/gpu-01/qwen3/0", "instance": "qwen3:8000", "engine": "vllm", "model": "qwen3", "host": "gpu-01", "replica": "0"},
                         "exp_annotations": {"summary": "vllm qwen3 (replica 0) on gpu-01 is down",
                                             "description": "Prometheus cannot scrape or probe qwen3:8000 (job vllm/gpu-01/qwen3/0) for 2m: the container is stopped, unhealthy or unreachable."}},
                    ],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": 'vllm:kv_cache_usage_perc{model="qwen3", host="gpu-01", replica="0", engine="vllm"}', "values": "0.95x10"},
                {"series": 'vllm:kv_cache_usage_perc{model="qwen3", host="gpu-02", replica="1", engine="vllm"}', "values": "0.85x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "KvCacheNearlyFull", "exp_alerts": []},
                {
                    "eval_time": "6m",
                    "alertname": "KvCacheNearlyFull",
                    "exp_alerts": [{"exp_labels": {"severity": "warning", "model": "qwen3", "host": "gpu-01", "replica": "0", "engine": "vllm"},
                                    "exp_annotations": {
                                        "summary": "vLLM qwen3 on gpu-01: KV cache 95% full",
                                        "description": "KV-cache use above 90% for 5m: requests queue or are preempted. Add a replica, raise gpuMemoryUtilization or lower maxModelLen.",
                                    }}],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": 'DCGM_FI_DEV_FB_USED{gpu="0", host="gpu-01"}', "values": "78000x10"},
                {"series": 'DCGM_FI_DEV_FB_FREE{gpu="0", host="gpu-01"}', "values": "1000x10"},
                {"series": 'DCGM_FI_DEV_FB_USED{gpu="1", host="gpu-01"}', "values": "60000x10"},
                {"series": 'DCGM_FI_DEV_FB_FREE{gpu="1", host="gpu-01"}', "values": "19000x10"},
                {"series": 'litellm_deployment_state{litellm_model_name="qwen3", api_base="http://qwen3:8000/v1", model_id="a", api_provider="hosted_vllm"}', "values": "0 0 2x8"},
            ],
            "alert_rule_test": [
                {"eval_time": "6m", "alertname": "GpuMemoryNearlyFull",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", "gpu": "0", "host": "gpu-01"},
                                 "exp_annotations": {"summary": "GPU 0 on gpu-01: memory 98.73% used",
                                                     "description": "Framebuffer use above 95% for 5m: a service outside the GPU plan, or one over its reservation, may make another fail to allocate."}}]},
                {"eval_time": "2m", "alertname": "GatewayDeploymentOutage", "exp_alerts": []},
                {"eval_time": "4m", "alertname": "GatewayDeploymentOutage",
                 "exp_alerts": [{"exp_labels": {"severity": "critical", "litellm_model_name": "qwen3", "api_base": "http://qwen3:8000/v1", "model_id": "a", "api_provider": "hosted_vllm"},
                                 "exp_annotations": {"summary": "LiteLLM marks deployment qwen3 at http://qwen3:8000/v1 in outage",
                                                     "description": "The gateway's router sees every recent call to this deployment fail; requests for the model go to its other deployments or fallbacks, or fail."}}]},
            ],
        },
        {
            # 100 requests a minute for each model; qwen3 fails 10 of them (10 %), nomic 1 (1 %).
            "interval": "1m",
            "input_series": [
                {"series": 'litellm_proxy_total_requests_metric_total{requested_model="qwen3"}', "values": "0+100x20"},
                {"series": 'litellm_proxy_failed_requests_metric_total{requested_model="qwen3"}', "values": "0+10x20"},
                {"series": 'litellm_proxy_total_requests_metric_total{requested_model="nomic"}', "values": "0+100x20"},
                {"series": 'litellm_proxy_failed_requests_metric_total{requested_model="nomic"}', "values": "0+1x20"},
            ],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "GatewayFailureRatioHigh", "exp_alerts": []},
                {"eval_time": "16m", "alertname": "GatewayFailureRatioHigh",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", "requested_model": "qwen3"},
                                 "exp_annotations": {"summary": "10% of gateway requests for qwen3 fail",
                                                     "description": "More than 5% of requests for this model failed over 5m, for 10m. See the gateway's log and the model's dashboard."}}]},
            ],
        },
    ],
}


@needs_promtool
def test_promtool_unit_tests_of_the_alert_rules(config_dir):
    rules_file = config_dir / "rules" / alert_rules.RULES_FILE_NAME
    tests_file = config_dir / "rules_test.yml"
    tests_file.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], **RULE_TESTS}, sort_keys=False))
    tested = run(["promtool", "test", "rules", str(tests_file)], config_dir)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@needs_promtool
def test_promtool_unit_tests_fail_when_an_alert_is_expected_that_does_not_fire(config_dir):
    # Guards the test above: a wrong expectation is reported, so a pass means the rules behave.
    wrong = json.loads(json.dumps(RULE_TESTS))
    wrong["tests"][1]["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    tests_file = config_dir / "rules_test.yml"
    tests_file.write_text(yaml.safe_dump({"rule_files": [str(config_dir / "rules" / alert_rules.RULES_FILE_NAME)], **wrong}))
    assert run(["promtool", "test", "rules", str(tests_file)], config_dir).returncode != 0


# --- the generated prometheus.yml ------------------------------------------------------------------


def test_every_target_carries_model_engine_host_and_replica():
    config = yaml.safe_load(scrape_config.render_prometheus_config(TARGETS, blackbox_address="bb:9115"))
    jobs = config["scrape_configs"]
    assert len(jobs) == len(TARGETS)
    for job in jobs:
        (static,) = job["static_configs"]
        assert set(static["labels"]) == {"model", "engine", "host", "replica"}
    assert config["global"] == {"scrape_interval": "15s", "evaluation_interval": "15s"}
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_a_relay_target_gets_its_token_file_ca_and_server_name():
    jobs = {j["job_name"]: j for j in yaml.safe_load(scrape_config.render_prometheus_config(TARGETS, blackbox_address="bb:9115"))["scrape_configs"]}
    relay = jobs["vllm/gpu-02/qwen3/1"]
    assert relay["scheme"] == "https" and relay["metrics_path"] == "/qwen3/metrics"
    assert relay["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/credentials/relay-gpu-02"}
    assert relay["tls_config"] == {"ca_file": "/etc/prometheus/ca/stack-ca.pem", "server_name": "relay.gpu-02"}
    assert relay["static_configs"][0]["targets"] == ["10.0.0.2:8443"]
    local = jobs["vllm/gpu-01/qwen3/0"]
    assert "authorization" not in local and "tls_config" not in local and local["scheme"] == "http"


def test_probed_engines_go_through_blackbox_to_their_health_route():
    jobs = {j["job_name"]: j for j in yaml.safe_load(scrape_config.render_prometheus_config(TARGETS, blackbox_address="bb:9115"))["scrape_configs"]}
    ollama = jobs["ollama/gpu-01/ollama/0"]
    assert ollama["metrics_path"] == "/probe" and ollama["params"] == {"module": ["ollama_gpu_01_ollama_0"]}
    assert ollama["static_configs"][0]["targets"] == ["http://ollama:11434/api/version"]
    assert {"target_label": "__address__", "replacement": "bb:9115"} in ollama["relabel_configs"]
    assert jobs["speaches/gpu-01/speaches/0"]["static_configs"][0]["targets"] == ["http://speaches:8000/health"]
    # The token is the blackbox module's business, not the probe scrape's.
    assert "authorization" not in jobs["speaches/gpu-01/speaches/0"]


def test_output_is_the_same_whatever_the_order_of_the_targets():
    first = scrape_config.render_prometheus_config(TARGETS, blackbox_address="bb:9115")
    shuffled = list(TARGETS)
    random.Random(7).shuffle(shuffled)
    assert scrape_config.render_prometheus_config(shuffled, blackbox_address="bb:9115") == first
    assert scrape_config.render_blackbox_config(shuffled) == scrape_config.render_blackbox_config(TARGETS)
    assert alert_rules.render_alert_rules() == alert_rules.render_alert_rules()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"engine": "llamacpp"}, "unknown engine 'llamacpp'"),
        ({"model": ""}, "`model` must be a non-empty string"),
        ({"host": "gpu 01"}, "`host` 'gpu 01' may hold only"),
        ({"address": "http://qwen3:8000"}, "`address` must be host:port"),
        ({"scheme": "ftp"}, "`scheme` must be http or https"),
        ({"path": "metrics"}, "`path` must start with /"),
        ({"tls_ca": "stack-ca"}, "`tls_ca`/`server_name` need scheme https"),
    ],
)
def test_a_bad_target_is_refused_naming_the_field(change, message):
    target = {**TARGETS[1], **change}
    with pytest.raises(ValueError, match="scrape target 0") as error:
        scrape_config.render_prometheus_config([target], blackbox_address="bb:9115")
    assert message in str(error.value)


def test_two_targets_for_the_same_replica_are_refused():
    with pytest.raises(ValueError, match="two targets for vllm/gpu-01/qwen3/0"):
        scrape_config.check_targets([TARGETS[1], {**TARGETS[1], "address": "other:8000"}])


def test_intervals_must_be_durations():
    with pytest.raises(ValueError, match="scrape_interval must be a Prometheus duration"):
        scrape_config.render_prometheus_config(TARGETS, blackbox_address="bb:9115", scrape_interval="15 seconds")


def test_alert_thresholds_are_configurable_and_checked():
    rules = {r["alert"]: r for r in alert_rules.alert_rules({"kv_cache_ratio": 0.8, "kv_cache_for": "10m"})}
    assert rules["KvCacheNearlyFull"]["expr"] == "vllm:kv_cache_usage_perc > 0.8"
    assert rules["KvCacheNearlyFull"]["for"] == "10m"
    with pytest.raises(ValueError, match="gpu_memory_ratio must be a ratio"):
        alert_rules.alert_rules({"gpu_memory_ratio": 95})


def test_every_alert_has_a_for_a_severity_and_annotations():
    for rule in alert_rules.alert_rules():
        assert rule["for"] and rule["labels"]["severity"] in ("warning", "critical")
        assert set(rule["annotations"]) == {"summary", "description"}


# --- dashboards ------------------------------------------------------------------------------------


def test_metric_names_are_parsed_out_of_promql():
    assert metric_names('histogram_quantile(0.95, sum by (le, model_group) (rate(litellm_request_total_latency_metric_bucket{model_group="a b"}[$__rate_interval])))') == {"litellm_request_total_latency_metric_bucket"}
    assert metric_names("DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.95") == {"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"}
    assert metric_names("up == 0 or probe_success == 0") == {"up", "probe_success"}
    assert metric_names('vllm:kv_cache_usage_perc{model="qwen3"} > 0.9') == {"vllm:kv_cache_usage_perc"}
    assert metric_names("vector(81920)") == set()


def test_dashboards_are_json_and_name_only_catalogued_metrics():
    boards = dashboards.dashboards(MODELS, GPUS)
    assert sorted(boards) == ["gateway.json", "gpus.json", "models.json"]
    known = metrics_catalog.known_series()
    exprs = dashboard_expressions(json.loads(dashboards.render_dashboard(b)) for b in boards.values())
    assert len(exprs) > 40
    named = {name for expr in exprs for name in metric_names(expr)}
    assert named - known == set()
    # The rules too.
    assert {n for e in rule_expressions(alert_rules.render_alert_rules()) for n in metric_names(e)} - known == set()


def test_the_catalogue_knows_the_names_the_issue_lists():
    known = metrics_catalog.known_series()
    for name in ("litellm_proxy_total_requests_metric_total", "litellm_proxy_failed_requests_metric_total",
                 "litellm_request_total_latency_metric_bucket", "litellm_llm_api_time_to_first_token_metric_bucket",
                 "litellm_deployment_state", "litellm_deployment_cooled_down_total", "litellm_output_tokens_metric_total",
                 "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
                 "vllm:e2e_request_latency_seconds_bucket", "vllm:generation_tokens_total",
                 "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP",
                 "DCGM_FI_DEV_POWER_USAGE", "up", "probe_success"):
        assert name in known, name
    assert "vllm:gpu_cache_usage_perc" not in known


def test_the_vllm_names_and_kinds_match_the_installed_vllm():
    """Read, not imported (importing vLLM takes seconds): every catalogued name is registered with its kind."""
    import importlib.util
    import re

    # vLLM lives in its own venv (tests/engines, made by .ci/run), or in this one.
    root = Path(__file__).resolve().parent.parent
    found = sorted(root.glob(".venv-vllm/lib/python*/site-packages/vllm/v1/metrics/loggers.py"))
    spec = importlib.util.find_spec("vllm")
    if not found and spec is not None and spec.origin is not None:
        found = [Path(spec.origin).parent / "v1" / "metrics" / "loggers.py"]
    if not found:
        if os.environ.get("LLMSTACK_ENGINES_REQUIRED") == "1":
            pytest.fail("vLLM is not installed (.venv-vllm): run .ci/run")
        pytest.skip("vLLM is not installed here")
    source = found[0].read_text()
    for name, kind in metrics_catalog.VLLM_METRICS.items():
        at = source.find(f'name="{name}"')
        assert at >= 0, f"{name} is not registered by this vLLM"
        assert re.findall(r"self\._(gauge|counter|histogram)_cls\(", source[max(0, at - 200):at])[-1:] == [kind], name


def test_a_new_model_gets_its_row_without_editing_json():
    before = dashboards.models_dashboard(MODELS)
    after = dashboards.models_dashboard([*MODELS, {"name": "llama", "engine": "vllm"}])
    rows = [p["title"] for p in after["panels"] if p["type"] == "row"]
    assert rows == sorted(rows) and "llama (vllm)" in rows and len(rows) == len(MODELS) + 1
    llama = [p for p in after["panels"] if p["title"].startswith("llama: ")]
    assert {p["title"] for p in llama} >= {"llama: requests/s and failures/s", "llama: gateway latency", "llama: time to first token",
                                           "llama: generated tokens/s", "llama: queue", "llama: KV cache used"}
    assert all('model="llama"' in t["expr"] or 'requested_model="llama"' in t["expr"] or 'model_group="llama"' in t["expr"] for p in llama for t in p["targets"])
    assert len(after["panels"]) > len(before["panels"])
    ids = [p["id"] for p in after["panels"]]
    assert ids == list(range(1, len(ids) + 1))


def test_a_model_served_by_a_shared_server_is_selected_by_that_servers_target():
    board = dashboards.models_dashboard([{"name": "nomic", "engine": "infinity", "server": "infinity"}])
    engine_exprs = [t["expr"] for p in board["panels"] if p["title"].startswith("nomic: Infinity") for t in p["targets"]]
    assert engine_exprs and all('model="infinity"' in e for e in engine_exprs)


def test_gpu_panels_show_used_against_the_plans_reservation():
    board = dashboards.gpus_dashboard(GPUS)
    memory = next(p for p in board["panels"] if p["title"] == "gpu-01 GPU 0: memory used vs reserved")
    assert [t["expr"] for t in memory["targets"]] == ['max(DCGM_FI_DEV_FB_USED{host="gpu-01", gpu="0"})', "vector(80486)", "vector(81920)"]
    assert memory["fieldConfig"]["defaults"]["unit"] == "decmbytes"
    assert [p["title"] for p in board["panels"] if p["type"] == "row"] == ["gpu-01 GPU 0 (ollama, qwen3)", "gpu-02 GPU 0"]


def test_a_gpu_on_a_host_without_inventory_shows_only_what_it_uses():
    board = dashboards.gpus_dashboard([{"host": "laptop", "gpu": "0"}])
    memory = next(p for p in board["panels"] if p["title"] == "laptop GPU 0: memory used vs reserved")
    assert [t["expr"] for t in memory["targets"]] == ['max(DCGM_FI_DEV_FB_USED{host="laptop", gpu="0"})']


def test_without_gpus_there_is_no_gpu_dashboard():
    assert sorted(dashboards.dashboards(MODELS, [])) == ["gateway.json", "models.json"]


def test_dashboards_are_deterministic_and_refuse_unknown_engines():
    assert dashboards.provisioning_files("http://prometheus:9090", MODELS, GPUS) == dashboards.provisioning_files("http://prometheus:9090", list(reversed(MODELS)), list(reversed(GPUS)))
    with pytest.raises(ValueError, match="unknown engine 'llamacpp'"):
        dashboards.models_dashboard([{"name": "x", "engine": "llamacpp"}])
    with pytest.raises(ValueError, match="a name appears twice"):
        dashboards.models_dashboard([MODELS[0], MODELS[0]])


def test_provisioning_files_point_grafana_at_prometheus_and_the_dashboards():
    files = dashboards.provisioning_files("http://prometheus:9090", MODELS, GPUS)
    assert sorted(files) == [
        "/etc/grafana/dashboards/llmstack/gateway.json",
        "/etc/grafana/dashboards/llmstack/gpus.json",
        "/etc/grafana/dashboards/llmstack/models.json",
        "/etc/grafana/provisioning/dashboards/llmstack.yaml",
        "/etc/grafana/provisioning/datasources/llmstack.yaml",
    ]
    (source,) = yaml.safe_load(files["/etc/grafana/provisioning/datasources/llmstack.yaml"])["datasources"]
    assert source == {"access": "proxy", "editable": False, "isDefault": True, "name": "Prometheus", "type": "prometheus",
                      "uid": dashboards.DATASOURCE_UID, "url": "http://prometheus:9090"}
    (provider,) = yaml.safe_load(files["/etc/grafana/provisioning/dashboards/llmstack.yaml"])["providers"]
    assert provider["options"] == {"path": "/etc/grafana/dashboards/llmstack"} and provider["type"] == "file"
    for path, text in files.items():
        if path.endswith(".json"):
            board = json.loads(text)
            assert board["uid"].startswith("llmstack-")
            assert all(t["datasource"]["uid"] == dashboards.DATASOURCE_UID for p in board["panels"] for t in p.get("targets", []))


# --- the gateway's metrics settings ----------------------------------------------------------------


def test_gateway_metrics_settings():
    settings = litellm_metrics.gateway_metrics_settings()
    assert settings == {
        "litellm_settings": {"callbacks": ["prometheus"]},
        "envs": {"PROMETHEUS_METRICS_PORT": "4001", "PROMETHEUS_MULTIPROC_DIR": "/tmp/litellm_prometheus_multiproc"},
        "metrics_port": 4001,
        "metrics_path": "/metrics/",
    }
    with pytest.raises(ValueError, match="other than the gateway's 4000"):
        litellm_metrics.gateway_metrics_settings(4000)
