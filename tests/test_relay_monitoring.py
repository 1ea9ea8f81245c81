"""Prometheus on the gateway's host watches what runs on another host through that host's relay, never a published port.

With the plan of the two-host example with monitoring on: every remote target goes to the relay over TLS (the stack
CA) with the relay's monitoring key, and the generated prometheus.yml passes the real `promtool check config`. With
Debian's real Caddy and the generated relay: the monitoring key opens only each engine's one monitoring path (the
engine then gets its own key, never the monitoring one); the engine key does not open /metrics, and the monitoring
key opens nothing the gateway uses.
"""

import copy
import http.client
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from components import caddy, scrape_config
from config.plan import is_secret, reveal, run_program
from config.source import from_stack_file
from tests import real_caddy
from tests.conftest import ROOT, container, envs_of
from tests.stack_ca_files import make_ca, write_server_files
from tests.standins.launcher import free_port
from tests.test_caddy_run import HOST_ADDRESS, PinnedHTTPSConnection, StandIn, call, trusting

EXAMPLE = ROOT / "examples" / "Pulumi.two-hosts.yaml"
MONITOR_KEY = "monitor-key-5c1e9b"
ENGINE_KEYS = {"KEY_QWEN3_GPU_02": "qwen3-key-77aa01", "KEY_OLLAMA": "ollama-key-0b3c2d", "MONITOR_KEY": MONITOR_KEY}


@pytest.fixture(scope="module")
def plan():
    raw = copy.deepcopy(from_stack_file(EXAMPLE))
    raw["monitoring"] = {"retention": "30d"}
    return run_program(raw, stack="two-hosts")


def uploads(resource) -> dict[str, str]:
    return {u["file"]: u["content"] for u in reveal(resource.inputs["uploads"])}


def scrape_jobs(plan) -> dict[str, dict]:
    config = yaml.safe_load(uploads(container(plan, "prometheus"))[scrape_config.CONFIG_FILE])
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_remote_targets_go_through_the_relay_with_its_key_and_the_stack_ca(plan):
    jobs = scrape_jobs(plan)
    remote = jobs["vllm/gpu-02/qwen3/gpu-02"]
    assert remote["scheme"] == "https" and remote["metrics_path"] == "/qwen3-gpu-02/metrics"
    assert remote["static_configs"][0]["targets"] == ["10.0.0.12:8443"]
    assert remote["static_configs"][0]["labels"] == {"engine": "vllm", "host": "gpu-02", "model": "qwen3", "replica": "gpu-02"}
    assert remote["authorization"]["credentials_file"] == scrape_config.credential_file("relay-gpu-02")
    assert remote["tls_config"]["ca_file"] == scrape_config.ca_file("stack-ca")
    # The replica on the gateway's host is scraped on the stack network, as before.
    local = jobs["vllm/gpu-01/qwen3/0"]
    assert local["scheme"] == "http" and local["static_configs"][0]["targets"] == ["qwen3:8000"]
    assert jobs["dcgm/gpu-02/gpus/0"]["metrics_path"] == "/dcgm-exporter/metrics"
    assert jobs["infinity/gpu-02/infinity/0"]["metrics_path"] == "/infinity/metrics"


def test_the_relays_monitoring_key_is_a_secret_that_prometheus_holds(plan):
    relay, prometheus = container(plan, "relay-gpu-02"), container(plan, "prometheus")
    key = envs_of(relay)["MONITOR_KEY"]
    assert key and uploads(prometheus)[scrape_config.credential_file("relay-gpu-02")] == key
    assert next(u for u in prometheus.sent["uploads"] if u["file"] == scrape_config.credential_file("relay-gpu-02"))["content"]
    assert all(is_secret(item) for item in relay.sent["envs"])
    assert uploads(prometheus)[scrape_config.ca_file("stack-ca")] == plan.outputs["caCertificate"]
    # Nothing on gpu-02 publishes a port but the relay, monitoring included.
    published = [c.name for c in plan.of_type("docker:index/container:Container") if c.provider == "host-gpu-02" and c.inputs.get("ports")]
    assert published == ["relay-gpu-02"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus; .ci/run installs it)")
def test_the_generated_prometheus_config_passes_promtool(plan, tmp_path):
    for path, content in uploads(container(plan, "prometheus")).items():
        local = tmp_path / path.removeprefix(scrape_config.CONFIG_DIR + "/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(content.replace(scrape_config.CONFIG_DIR, str(tmp_path)))
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def relay(tmp_path_factory) -> Iterator[dict]:
    ca = make_ca()
    directory = tmp_path_factory.mktemp("watched-relay")
    cert_file, key_file = write_server_files(directory / "tls", *ca.issue(ip_addresses=[HOST_ADDRESS]))
    engines = {name: StandIn(name) for name in ("qwen3-gpu-02", "ollama", "dcgm-exporter")}
    routes: list[caddy.RelayRoute] = [
        {"name": "qwen3-gpu-02", "engine": "vllm", "upstream": engines["qwen3-gpu-02"].address, "key_env": "KEY_QWEN3_GPU_02", "monitor_path": "/metrics"},
        {"name": "ollama", "engine": "ollama", "upstream": engines["ollama"].address, "key_env": "KEY_OLLAMA", "monitor_path": "/api/version"},
        {"name": "dcgm-exporter", "engine": caddy.MONITOR_ONLY, "upstream": engines["dcgm-exporter"].address, "key_env": "MONITOR_KEY", "monitor_path": "/metrics"},
    ]
    port, health_port = free_port(), free_port()
    text = caddy.render_relay_caddyfile(
        routes, server_name=HOST_ADDRESS, port=port, cert_file=str(cert_file), key_file=str(key_file),
        health_port=health_port, monitor_key_env="MONITOR_KEY",
    )
    assert real_caddy.validate(text, directory).returncode == 0
    with real_caddy.running(text, directory, health_port, env=ENGINE_KEYS):
        yield {"port": port, "engines": engines, "ca": ca}
    for engine in engines.values():
        engine.shutdown()


@pytest.fixture
def conn(relay) -> Iterator[http.client.HTTPSConnection]:
    for engine in relay["engines"].values():
        engine.seen.clear()
    connection = PinnedHTTPSConnection(HOST_ADDRESS, relay["port"], context=trusting(relay["ca"].cert_pem), timeout=10)
    yield connection
    connection.close()


def test_the_monitoring_key_opens_the_metrics_path_and_the_engine_gets_its_own_key(relay, conn):
    status, _ = call(conn, "GET", "/qwen3-gpu-02/metrics", MONITOR_KEY)
    assert status == 200
    [seen] = relay["engines"]["qwen3-gpu-02"].seen
    assert seen["path"] == "/metrics" and seen["authorization"] == f"Bearer {ENGINE_KEYS['KEY_QWEN3_GPU_02']}"


def test_the_monitoring_key_reaches_the_exporter_and_ollama_without_passing_any_key_on(relay, conn):
    assert call(conn, "GET", "/dcgm-exporter/metrics", MONITOR_KEY)[0] == 200
    assert call(conn, "GET", "/ollama/api/version", MONITOR_KEY)[0] == 200
    assert [s["authorization"] for s in relay["engines"]["dcgm-exporter"].seen] == [None]
    assert [s["authorization"] for s in relay["engines"]["ollama"].seen] == [None]


@pytest.mark.parametrize(
    ("path", "key", "status"),
    [
        ("/qwen3-gpu-02/metrics", ENGINE_KEYS["KEY_QWEN3_GPU_02"], 403),  # the gateway's key does not open /metrics
        ("/qwen3-gpu-02/metrics", None, 401),
        ("/qwen3-gpu-02/v1/chat/completions", MONITOR_KEY, 401),  # nor the monitoring key the gateway's paths
        ("/qwen3-gpu-02/invocations", MONITOR_KEY, 401),
        ("/dcgm-exporter/metrics", ENGINE_KEYS["KEY_QWEN3_GPU_02"], 401),
        ("/dcgm-exporter/other", MONITOR_KEY, 403),
    ],
)
def test_nothing_else_opens(relay, conn, path, key, status):
    method = "POST" if "completions" in path or "invocations" in path else "GET"
    assert call(conn, method, path, key, b"{}" if method == "POST" else None)[0] == status
    assert not [s for engine in relay["engines"].values() for s in engine.seen]
