"""The real LiteLLM 1.108.7 with gateway_metrics_settings(): its key-less metrics listener serves every
LiteLLM series the dashboards and alert rules use; port 4000's /metrics still wants the key.

Then (Debian's `prometheus` and `prometheus-blackbox-exporter`, installed by .ci/run) the real Prometheus
and blackbox_exporter run the generated configs against that listener and the vLLM, Ollama and Speaches
stand-ins: every target up with its labels, the request counter and deployment state queryable, and a
stopped engine makes TargetDown pending."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse

import httpx
import pytest
import yaml

from components import alert_rules, dashboards, litellm_metrics, metrics_catalog, scrape_config
from tests.promql_names import dashboard_expressions, metric_names, rule_expressions
from tests.standins.gateway import start_gateway, stop_gateway
from tests.standins.launcher import base_env, free_port, http_get, spawn, start_standin, stop, wait_ready

pytestmark = pytest.mark.contract

MODEL = "qwen3"
MASTER_KEY = "sk-metrics-test-master-key-0123456789"
VLLM_KEY = "vllm-metrics-test-key-0123456789"
MODELS: list[dashboards.DashboardModel] = [{"name": MODEL, "engine": "vllm"}]
GPUS: list[dashboards.GpuReservation] = [{"host": "local", "gpu": "0", "memory_gib": 80, "reserved_gib": 70}]


def exposed_names(text: str) -> set[str]:
    """Series names on a Prometheus text page."""
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


@pytest.fixture(scope="module")
def gateway(litellm_installed, tmp_path_factory):
    work = tmp_path_factory.mktemp("gateway-metrics")
    vllm_port = free_port()
    engine = start_standin(
        "vllm",
        [MODEL, "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(vllm_port)],
        {"VLLM_API_KEY": VLLM_KEY},
        f"http://127.0.0.1:{vllm_port}/health",
        work / "vllm.log",
    )
    settings = litellm_metrics.gateway_metrics_settings(metrics_port=free_port())
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"hosted_vllm/{MODEL}",
                    "api_base": f"http://127.0.0.1:{vllm_port}/v1",
                    "api_key": "os.environ/VLLM_API_KEY",
                },
            }
        ],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        "litellm_settings": settings["litellm_settings"],
    }
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=True))
    env = {
        **settings["envs"],
        # The container's /tmp path is not ours to use here; the same setting, in this test's directory.
        litellm_metrics.MULTIPROC_DIR_ENV: str(work / "multiproc"),
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "VLLM_API_KEY": VLLM_KEY,
    }
    url, process = start_gateway(config_path, env, workdir=work)
    try:
        yield url, settings["metrics_port"], vllm_port
    finally:
        stop_gateway(process)
        stop(engine)


@pytest.fixture(scope="module")
def traffic(gateway):
    """One plain request, one streamed, one that fails: every series the dashboards need appears."""
    url, metrics_port, _ = gateway
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
    with httpx.Client(timeout=60) as client:
        assert client.post(f"{url}/chat/completions", json=body, headers=headers).status_code == 200
        with client.stream("POST", f"{url}/chat/completions", json={**body, "stream": True}, headers=headers) as streamed:
            assert streamed.status_code == 200
            streamed.read()
        failed = client.post(f"{url}/chat/completions", json={**body, "model": "no-such-model"}, headers=headers)
        assert failed.status_code >= 400
    # The metrics process reads the workers' files on each scrape; give the callbacks a moment.
    deadline = time.monotonic() + 20
    needed = litellm_names_used()
    while True:
        status, text = http_get(f"http://127.0.0.1:{metrics_port}{litellm_metrics.METRICS_PATH}")
        names = exposed_names(text.decode())
        if status == 200 and needed <= names or time.monotonic() > deadline:
            return status, text.decode(), names
        time.sleep(0.5)


def litellm_names_used() -> set[str]:
    """LiteLLM series named by the generated dashboards and rules."""
    exprs = dashboard_expressions(dashboards.dashboards(MODELS, GPUS).values()) + rule_expressions(alert_rules.render_alert_rules())
    litellm_series = metrics_catalog.series_names(metrics_catalog.LITELLM_METRICS)
    return {name for expr in exprs for name in metric_names(expr) if name in litellm_series}


def test_the_metrics_listener_serves_every_litellm_series_the_dashboards_and_rules_use_without_a_key(traffic):
    status, text, names = traffic
    assert status == 200
    used = litellm_names_used()
    assert {"litellm_proxy_total_requests_metric_total", "litellm_deployment_state"} <= used
    assert used <= names, f"missing from LiteLLM's metrics: {sorted(used - names)}"
    # The request counter counted this model, and its deployment is healthy (0).
    assert any(line.startswith("litellm_proxy_total_requests_metric_total{") and f'requested_model="{MODEL}"' in line for line in text.splitlines())
    states = [line for line in text.splitlines() if line.startswith("litellm_deployment_state{")]
    assert states and all(line.rsplit(" ", 1)[1] == "0.0" for line in states), states
    # litellm_model_name is the entry's model without its provider prefix; multiprocess mode adds `pid`.
    assert all(f'litellm_model_name="{MODEL}"' in line and 'api_provider="hosted_vllm"' in line and "pid=" in line for line in states)


def test_the_catalogue_kinds_match_what_the_gateway_shows(traffic):
    """A catalogued metric shows up only under the series names its kind gives (gauge as is, counter `_total`...)."""
    _, _, names = traffic
    catalogued = metrics_catalog.series_names(metrics_catalog.LITELLM_METRICS)
    checked = 0
    for base in metrics_catalog.LITELLM_METRICS:
        shown = {n for n in names if n == base or (n.startswith(base + "_") and n[len(base):] in ("_total", "_bucket", "_sum", "_count", "_created"))}
        shown -= {base + "_created"}  # prometheus_client's creation timestamps
        assert shown <= catalogued, f"{base}: shown as {sorted(shown)}"
        checked += bool(shown)
    assert checked >= 8, f"only {checked} catalogued LiteLLM metrics appeared"


def test_the_listener_sends_a_content_type_prometheus_3_accepts(gateway, traffic):
    # Prometheus 3 fails a scrape whose Content-Type is missing or unknown (2.x guessed text).
    _, metrics_port, _ = gateway
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).status_code == 307
    response = httpx.get(f"http://127.0.0.1:{metrics_port}{litellm_metrics.METRICS_PATH}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4"), response.headers["content-type"]


def test_the_main_port_metrics_still_need_the_master_key(gateway, traffic):
    url, _, _ = gateway
    assert http_get(f"{url}/metrics")[0] == 401
    assert http_get(f"{url}/metrics", {"Authorization": f"Bearer {MASTER_KEY}"})[0] == 200


needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-blackbox-exporter") is None,
    reason="Debian's prometheus and prometheus-blackbox-exporter packages are not installed",
)
SPEACHES_KEY = "speaches-metrics-test-key-0123456789"


class Monitored:
    """The real Prometheus and blackbox_exporter watching the gateway and stand-in engines, on loopback."""

    def __init__(self, base: str, speaches) -> None:
        self.base = base
        self.speaches = speaches

    def query(self, expr: str) -> list[dict]:
        status, body = http_get(f"{self.base}/api/v1/query?query={urllib.parse.quote(expr)}")
        assert status == 200, body
        return json.loads(body)["data"]["result"]

    def wait_for(self, expr: str, predicate, timeout: float = 40) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if predicate(result) or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def rules(self) -> dict[str, dict]:
        status, body = http_get(f"{self.base}/api/v1/rules")
        assert status == 200, body
        return {r["name"]: r for group in json.loads(body)["data"]["groups"] for r in group["rules"]}


@pytest.fixture(scope="module")
def monitored(gateway, traffic, tmp_path_factory):
    """Targets: the gateway's metrics listener, the vLLM stand-in, Ollama and Speaches stand-ins probed."""
    _, metrics_port, vllm_port = gateway
    root = tmp_path_factory.mktemp("prometheus")
    processes = []
    try:
        ollama_port, speaches_port, blackbox_port, prometheus_port = (free_port() for _ in range(4))
        processes.append(start_standin("ollama", ["serve"], {"OLLAMA_HOST": f"127.0.0.1:{ollama_port}", "OLLAMA_MODELS": str(root / "ollama")},
                                       f"http://127.0.0.1:{ollama_port}/", root / "ollama.log"))
        speaches = start_standin(
            "speaches", [], {"UVICORN_HOST": "127.0.0.1", "UVICORN_PORT": str(speaches_port), "API_KEY": SPEACHES_KEY, "HF_HUB_CACHE": str(root / "hub")},
            f"http://127.0.0.1:{speaches_port}/health", root / "speaches.log", ready_headers={"Authorization": f"Bearer {SPEACHES_KEY}"},
        )
        processes.append(speaches)
        targets: list[scrape_config.ScrapeTarget] = [
            {"engine": "litellm", "model": "gateway", "host": "local", "replica": "0", "address": f"127.0.0.1:{metrics_port}"},
            {"engine": "vllm", "model": MODEL, "host": "local", "replica": "0", "address": f"127.0.0.1:{vllm_port}"},
            {"engine": "ollama", "model": "ollama", "host": "local", "replica": "0", "address": f"127.0.0.1:{ollama_port}"},
            {"engine": "speaches", "model": "speaches", "host": "local", "replica": "0", "address": f"127.0.0.1:{speaches_port}", "bearer_token": "speaches"},
        ]
        (root / "credentials").mkdir()
        (root / "credentials" / "speaches").write_text(SPEACHES_KEY)
        (root / "rules").mkdir()
        (root / "rules" / alert_rules.RULES_FILE_NAME).write_text(alert_rules.render_alert_rules())
        (root / "blackbox.yml").write_text(scrape_config.render_blackbox_config(targets, config_dir=str(root)))
        (root / "prometheus.yml").write_text(scrape_config.render_prometheus_config(
            targets, blackbox_address=f"127.0.0.1:{blackbox_port}", rule_files=[str(root / "rules" / "*.yml")],
            scrape_interval="1s", evaluation_interval="1s", config_dir=str(root),
        ))
        blackbox = spawn(["prometheus-blackbox-exporter", f"--config.file={root / 'blackbox.yml'}", f"--web.listen-address=127.0.0.1:{blackbox_port}"],
                         base_env(), root / "blackbox.log", cwd=root)
        processes.append(blackbox)
        wait_ready(f"http://127.0.0.1:{blackbox_port}/-/healthy", blackbox, 20, log_path=root / "blackbox.log")
        prometheus = spawn(["prometheus", f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                            f"--web.listen-address=127.0.0.1:{prometheus_port}"], base_env(), root / "prometheus.log", cwd=root)
        processes.append(prometheus)
        wait_ready(f"http://127.0.0.1:{prometheus_port}/-/ready", prometheus, 30, log_path=root / "prometheus.log")
        yield Monitored(f"http://127.0.0.1:{prometheus_port}", speaches)
    finally:
        for process in reversed(processes):
            stop(process)


def _values(result: list[dict]) -> dict[str, str]:
    return {r["metric"]["engine"]: r["value"][1] for r in result}


@needs_prometheus
def test_every_target_is_up_with_its_labels(monitored):
    up = monitored.wait_for('up{engine=~"litellm|vllm"}', lambda r: _values(r) == {"litellm": "1", "vllm": "1"})
    assert _values(up) == {"litellm": "1", "vllm": "1"}
    probes = monitored.wait_for("probe_success", lambda r: _values(r) == {"ollama": "1", "speaches": "1"})
    assert _values(probes) == {"ollama": "1", "speaches": "1"}
    for series in up + probes:
        assert {"engine", "model", "host", "replica"} <= set(series["metric"]), series["metric"]
    assert {s["metric"]["model"] for s in up + probes} == {"gateway", MODEL, "ollama", "speaches"}


@needs_prometheus
def test_the_gateways_request_counter_and_deployment_state_are_queryable(monitored):
    requests = monitored.wait_for(f'litellm_proxy_total_requests_metric_total{{requested_model="{MODEL}"}}', bool)
    assert requests and sum(float(r["value"][1]) for r in requests) >= 2
    state = monitored.wait_for(f'litellm_deployment_state{{litellm_model_name="{MODEL}"}}', bool)
    assert state and {s["value"][1] for s in state} == {"0"}, state
    rules = monitored.rules()
    assert set(rules) == {r["alert"] for r in alert_rules.alert_rules()}
    assert all(rule["health"] == "ok" for rule in rules.values()), rules


@needs_prometheus
def test_a_stopped_engine_makes_target_down_pending(monitored):
    monitored.wait_for('probe_success{engine="speaches"}', lambda r: _values(r) == {"speaches": "1"})
    stop(monitored.speaches)
    down = monitored.wait_for('probe_success{engine="speaches"}', lambda r: _values(r) == {"speaches": "0"})
    assert _values(down) == {"speaches": "0"}
    deadline = time.monotonic() + 20
    while True:
        alerts = monitored.rules()["TargetDown"].get("alerts") or []
        if alerts or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(a["state"], a["labels"]["engine"], a["labels"]["model"]) for a in alerts] == [("pending", "speaches", "speaches")]
