"""The real LiteLLM proxy reaching every engine of the prod stack through a real relay (Debian's Caddy) over TLS,
and clients reaching LiteLLM through a real edge (tls: internal).

The prod stack rendered by the program, its engines as stand-ins (as in test_contract.py); in front of them
one relay rendered by `components/caddy.py`, with a certificate from a CA like the stack CA; the gateway's
config rewritten the way a remote host's entries will read (`relay_api_base`, a key for Ollama) and LiteLLM
told to trust the CA (`SSL_CERT_FILE`). Then the smoke check: every route passes, and the engines receive
only what the relay forwards, so ENGINE_PATHS covers what LiteLLM 1.108.7 calls. Then the same through an
edge in front of LiteLLM: its readiness probe admits the real proxy, and every route passes end to end.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from components import caddy
from tests import real_caddy
from tests.contract import harness
from tests.contract.harness import ENGINE_KEY_ENVS, Deployment
from tests.stack_ca_files import make_ca, write_server_files
from tests.standins.gateway import start_gateway, stop_gateway
from tests.standins.launcher import free_port
from tests.standins.server import LOG_PATH

pytestmark = pytest.mark.contract

RELAY_ADDRESS = "127.0.0.1"
OLLAMA_KEY_ENV = "OLLAMA_RELAY_API_KEY"


def relay_routes(deployment: Deployment) -> tuple[list[caddy.RelayRoute], dict[str, str], str]:
    """One route per engine container, its key (the engine's own; a new one for Ollama) under a relay env."""
    ollama_key = secrets.token_hex(20)
    routes: list[caddy.RelayRoute] = []
    keys: dict[str, str] = {}
    for name, backend in sorted(deployment.backends.items()):
        engine = backend.container.engine
        key_env = f"RELAY_{name.upper().replace('-', '_').replace('.', '_')}_KEY"
        own_key = ENGINE_KEY_ENVS[engine]
        keys[key_env] = backend.container.env[own_key] if own_key else ollama_key
        routes.append({"name": name, "engine": engine, "upstream": f"{backend.ip}:{backend.listening.port}", "key_env": key_env})
    return routes, keys, ollama_key


def through_relay(config: dict[str, Any], deployment: Deployment, routes: list[caddy.RelayRoute], port: int) -> dict[str, Any]:
    """The gateway config with every engine reached through the relay, as entries of a remote host read."""
    by_name = {r["name"]: r for r in routes}
    for entry in config["model_list"]:
        params = entry["litellm_params"]
        container = deployment.rendered.engine_of_host(urlsplit(params["api_base"]).hostname or "")
        route = by_name[container.name]
        params["api_base"] = caddy.relay_api_base(RELAY_ADDRESS, route, port)
        if route["engine"] == "ollama":
            params["api_key"] = f"os.environ/{OLLAMA_KEY_ENV}"
    return config


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory, litellm_installed: str) -> Iterator[tuple[Deployment, list[caddy.RelayRoute], Any]]:
    rendered = harness.render(harness.stack_file("prod"), "prod")
    workdir: Path = tmp_path_factory.mktemp("relay-contract")
    with harness.deploy(rendered, workdir, redis=harness.redis_available(), with_gateway=False) as deployment:
        ca = make_ca()
        cert_file, key_file = write_server_files(workdir / "tls", *ca.issue(ip_addresses=[RELAY_ADDRESS]))
        (workdir / "ca.pem").write_text(ca.cert_pem)
        routes, keys, ollama_key = relay_routes(deployment)
        port, health_port = free_port(), free_port()
        text = caddy.render_relay_caddyfile(
            routes, server_name=RELAY_ADDRESS, port=port, cert_file=str(cert_file), key_file=str(key_file), health_port=health_port
        )
        with real_caddy.running(text, workdir / "relay", health_port, env=keys):
            config_path = workdir / "config.yaml"
            config_path.write_text(yaml.safe_dump(through_relay(rendered.config, deployment, routes, port), sort_keys=False))
            env = {**harness.gateway_env(rendered), "SSL_CERT_FILE": str(workdir / "ca.pem"), OLLAMA_KEY_ENV: ollama_key}
            deployment.url, deployment.gateway = start_gateway(
                config_path, env, hosts=deployment.hosts, workdir=workdir / "gateway", timeout=harness.GATEWAY_START_TIMEOUT
            )
            try:
                deployment.clear_requests()
                yield deployment, routes, ca
            finally:
                stop_gateway(deployment.gateway)
                deployment.gateway = None


def test_every_route_of_the_prod_stack_passes_through_the_relay(relayed: tuple[Deployment, list[caddy.RelayRoute], Any]) -> None:
    deployment, routes, _ = relayed
    config = yaml.safe_load((deployment.workdir / "config.yaml").read_text())
    assert {urlsplit(e["litellm_params"]["api_base"]).scheme for e in config["model_list"]} == {"https"}
    assert {r["engine"] for r in routes} == {"vllm", "ollama", "infinity", "speaches"}
    code, text, rows = harness.run_smoke(deployment, "--models-json", deployment.rendered.models_json())
    assert code == 0, text
    assert rows == harness.expected_rows(deployment.rendered.outputs)

    for name, backend in deployment.backends.items():
        received = [r for r in backend.requests() if r["path"] != LOG_PATH]
        assert received, f"{name} received nothing"
        engine = backend.container.engine
        # Everything LiteLLM needed was forwarded: nothing reached an engine outside the relay's list.
        assert {r["path"] for r in received} <= set(caddy.ENGINE_PATHS[engine]), (name, sorted({r["path"] for r in received}))
        if engine == "ollama":
            assert not any("authorization" in {h.lower() for h in r["headers"]} for r in received)


def test_every_route_passes_through_the_edge_in_front_of_the_real_gateway(
    relayed: tuple[Deployment, list[caddy.RelayRoute], Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment, _, ca = relayed
    gateway = urlsplit(deployment.url)
    cert_file, key_file = write_server_files(tmp_path / "tls", *ca.issue(ip_addresses=[RELAY_ADDRESS]))
    port, health_port = free_port(), free_port()
    text = caddy.render_edge_caddyfile(
        tls="internal", domain=RELAY_ADDRESS, upstreams=[f"{gateway.hostname}:{gateway.port}"], https_port=port,
        cert_file=str(cert_file), key_file=str(key_file), health_port=health_port, health_interval="1s",
    )
    (tmp_path / "ca.pem").write_text(ca.cert_pem)
    # The smoke check's clients (openai, httpx) read the CA bundle from SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    with real_caddy.running(text, tmp_path / "edge", health_port):
        edge = Deployment(deployment.rendered, f"https://{RELAY_ADDRESS}:{port}", deployment.backends, deployment.hosts, None, tmp_path)
        code, output, rows = harness.run_smoke(edge, "--models-json", deployment.rendered.models_json())
    assert code == 0, output
    assert rows == harness.expected_rows(deployment.rendered.outputs)
