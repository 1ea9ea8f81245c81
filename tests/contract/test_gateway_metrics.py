"""The real LiteLLM 1.108.7 with gateway_metrics_settings(): its key-less metrics listener serves every
LiteLLM series the dashboards and alert rules use; port 4000's /metrics still wants the key.

Optionally (when Debian's `prometheus` is installed) the real Prometheus scrapes that listener with the
generated prometheus.yml, and its query API shows the target up and the request counter."""

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
        yield url, settings["metrics_port"], work
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
        status, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
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


def test_the_main_port_metrics_still_need_the_master_key(gateway, traffic):
    url, _, _ = gateway
    assert http_get(f"{url}/metrics")[0] == 401
    assert http_get(f"{url}/metrics", {"Authorization": f"Bearer {MASTER_KEY}"})[0] == 200


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus package is not installed")
def test_the_real_prometheus_scrapes_the_gateway_with_the_generated_config(gateway, traffic, tmp_path):
    _, metrics_port, _ = gateway
    target: scrape_config.ScrapeTarget = {
        "engine": "litellm", "model": "gateway", "host": "local", "replica": "0", "address": f"127.0.0.1:{metrics_port}",
    }
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / alert_rules.RULES_FILE_NAME).write_text(alert_rules.render_alert_rules())
    config = scrape_config.render_prometheus_config(
        [target], blackbox_address="127.0.0.1:9", rule_files=[str(rules_dir / "*.yml")],
        scrape_interval="1s", evaluation_interval="1s", config_dir=str(tmp_path),
    )
    (tmp_path / "prometheus.yml").write_text(config)
    port = free_port()
    log = tmp_path / "prometheus.log"
    process = spawn(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        base_env(), log, cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/-/ready", process, 30, log_path=log)

        def query(expr: str) -> list[dict]:
            status, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
            assert status == 200, body
            return json.loads(body)["data"]["result"]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            up = query('up{engine="litellm"}')
            requests = query(f'litellm_proxy_total_requests_metric_total{{requested_model="{MODEL}"}}')
            if up and up[0]["value"][1] == "1" and requests:
                break
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", up
        assert up[0]["metric"] | {"engine": "litellm", "model": "gateway", "host": "local", "replica": "0"} == up[0]["metric"]
        assert requests and float(requests[0]["value"][1]) >= 1
        state = query("litellm_deployment_state")
        assert state and {s["value"][1] for s in state} == {"0"}, state
        # The rules loaded, and nothing fires for a healthy gateway.
        status, body = http_get(f"{base}/api/v1/rules")
        rules = json.loads(body)["data"]["groups"][0]["rules"]
        assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules.alert_rules()}
        assert {r["name"]: r["state"] for r in rules if r["state"] != "inactive"} == {}
    finally:
        stop(process)
