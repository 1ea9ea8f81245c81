"""The relay and edge Caddyfiles (checked by Debian's real Caddy: validate and adapt) and CaddyProxy under mocks."""

import json
from pathlib import Path

import pulumi
import pytest

from components import caddy, container, stack_ca
from config.plan import is_secret, reveal
from tests import real_caddy
from tests.conftest import container as container_named
from tests.stack_ca_files import make_ca, write_server_files
from tests.tls_mocks import mock_pem, plaintext_holding, private_key_markers, run_library

ROUTES: list[caddy.RelayRoute] = [
    {"name": "qwen3", "engine": "vllm", "upstream": "qwen3:8000", "key_env": "VLLM_QWEN3_API_KEY"},
    {"name": "ollama", "engine": "ollama", "upstream": "ollama:11434", "key_env": "OLLAMA_API_KEY"},
    {"name": "infinity", "engine": "infinity", "upstream": "infinity:7997", "key_env": "INFINITY_API_KEY"},
    {"name": "speaches", "engine": "speaches", "upstream": "speaches:8000", "key_env": "SPEACHES_API_KEY"},
]
UPSTREAMS = ["litellm-1:4000", "litellm-2:4000"]
EXTRA: list[caddy.ExtraRoute] = [
    {"path": "/grafana", "upstream": "grafana:3000"},
    {"host": "chat.example.com", "upstream": "open-webui:8080"},
]


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> Path:
    """A real certificate and key (Caddy loads them while validating) for the relay and the internal edge."""
    directory = tmp_path_factory.mktemp("tls")
    cert_pem, key_pem = make_ca().issue(["llm.lan", "chat.example.com"], ["10.0.0.2"])
    write_server_files(directory, cert_pem, key_pem)
    return directory


def files_in(directory: Path) -> dict[str, str]:
    return {"cert_file": str(directory / "server.crt"), "key_file": str(directory / "server.key")}


def every_caddyfile(tls_dir: Path) -> dict[str, str]:
    """One of each generated shape: a relay with every engine kind, the edge in each TLS mode, with and without extras."""
    files = files_in(tls_dir)
    return {
        "relay": caddy.render_relay_caddyfile(ROUTES, server_name="10.0.0.2", **files),
        "relay-one-engine": caddy.render_relay_caddyfile(ROUTES[:1], server_name="gpu-02.lan", port=9443, **files),
        "edge-acme": caddy.render_edge_caddyfile(tls="acme", domain="llm.example.com", email="ops@example.com", upstreams=UPSTREAMS, extra_routes=EXTRA),
        "edge-acme-bare": caddy.render_edge_caddyfile(tls="acme", domain="llm.example.com", email="ops@example.com", upstreams=UPSTREAMS[:1]),
        "edge-internal": caddy.render_edge_caddyfile(tls="internal", domain="llm.lan", upstreams=UPSTREAMS, extra_routes=EXTRA, **files),
        "edge-internal-ip": caddy.render_edge_caddyfile(tls="internal", domain="10.0.0.2", upstreams=UPSTREAMS, **files),
        "edge-off": caddy.render_edge_caddyfile(tls="off", upstreams=UPSTREAMS, extra_routes=EXTRA, http_port=8080),
    }


SHAPES = ["relay", "relay-one-engine", "edge-acme", "edge-acme-bare", "edge-internal", "edge-internal-ip", "edge-off"]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_generated_caddyfile_passes_caddy_validate(shape, tls_dir, tmp_path):
    done = real_caddy.validate(every_caddyfile(tls_dir)[shape], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Valid configuration" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def adapted(tls_dir, tmp_path_factory) -> dict[str, dict]:
    return {shape: real_caddy.adapt(text, tmp_path_factory.mktemp(shape)) for shape, text in every_caddyfile(tls_dir).items()}


def handlers(config, kind: str) -> list[dict]:
    """Every handler of this kind anywhere in an adapted config."""
    found = []
    if isinstance(config, dict):
        if config.get("handler") == kind:
            found.append(config)
        for value in config.values():
            found += handlers(value, kind)
    elif isinstance(config, list):
        for value in config:
            found += handlers(value, kind)
    return found


def servers(config: dict) -> dict[str, dict]:
    return config["apps"]["http"]["servers"]


def server_on(config: dict, listen: str) -> dict:
    found = [s for s in servers(config).values() if s["listen"] == [listen]]
    assert len(found) == 1, f"{len(found)} servers listen on {listen}"
    return found[0]


# --- relay -----------------------------------------------------------------------------------------


def relay_subroute(config: dict, name: str) -> list[dict]:
    """The routes inside `handle_path /<name>/*` of the relay, after the prefix is stripped."""
    server = server_on(config, f":{caddy.RELAY_PORT}")
    [route] = [r for r in server["routes"] if r.get("match") == [{"path": [f"/{name}/*"]}]]
    strip, inner = route["handle"][0]["routes"]
    assert strip["handle"] == [{"handler": "rewrite", "strip_path_prefix": f"/{name}"}]
    return inner["handle"][0]["routes"]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r["engine"])
def test_relay_checks_the_key_then_forwards_only_the_gateway_paths(adapted, route):
    key_check, forward, refuse = relay_subroute(adapted["relay"], route["name"])
    key = f"{{env.{route['key_env']}}}"
    assert key_check["match"] == [
        {"not": [{"expression": f'{key} != "" && {{http.request.header.Authorization}} == "Bearer " + {key}'}]}
    ]
    assert key_check["handle"][0]["status_code"] == 401
    assert forward["match"] == [{"path": list(caddy.ENGINE_PATHS[route["engine"]])}]
    [proxy] = forward["handle"]
    assert proxy["upstreams"] == [{"dial": route["upstream"]}]
    assert proxy["flush_interval"] == -1
    stripped = proxy.get("headers", {}).get("request", {}).get("delete", [])
    assert stripped == (["Authorization"] if route["engine"] == "ollama" else [])
    assert refuse == {"handle": [{"handler": "static_response", "status_code": 403, "body": "not forwarded"}]}


def test_engine_paths_are_what_litellm_calls_and_nothing_open():
    assert caddy.ENGINE_PATHS == {
        "vllm": ("/v1/chat/completions", "/v1/completions", "/v1/models"),
        "infinity": ("/embeddings", "/rerank", "/models"),
        "speaches": ("/v1/audio/transcriptions", "/v1/audio/speech", "/v1/models"),
        "ollama": ("/api/chat", "/api/show", "/api/tags"),
    }
    everything = {p for paths in caddy.ENGINE_PATHS.values() for p in paths}
    for never in ("/metrics", "/health", "/tokenize", "/invocations", "/api/pull", "/api/delete", "/v1/models/{id}"):
        assert never not in everything


def test_relay_listens_with_tls_from_files_and_answers_unknown_engines_404(adapted, tls_dir):
    config = adapted["relay"]
    server = server_on(config, ":8443")
    [policy] = server["tls_connection_policies"]
    assert policy["default_sni"] == "10.0.0.2"
    assert config["apps"]["tls"]["certificates"]["load_files"][0]["certificate"] == str(tls_dir / "server.crt")
    assert server["automatic_https"] == {"disable": True}
    assert "automation" not in config["apps"]["tls"]
    assert server["routes"][-1]["handle"][0]["routes"][0]["handle"][0]["status_code"] == 404
    assert config["admin"] == {"disabled": True}
    assert server_on(adapted["relay-one-engine"], ":9443")["tls_connection_policies"][0]["default_sni"] == "gpu-02.lan"


def test_relay_caddyfile_names_keys_only_by_env():
    text = caddy.render_relay_caddyfile(ROUTES, server_name="10.0.0.2")
    for route in ROUTES:
        assert f"{{env.{route['key_env']}}}" in text
    # Runtime placeholders only: `{$NAME}` would be replaced when the file is adapted, and Caddy saves the
    # adapted config (autosave.json on the /config volume).
    assert "{$" not in text


def test_relay_caddyfile_is_stable_whatever_the_route_order():
    one = caddy.render_relay_caddyfile(ROUTES, server_name="10.0.0.2")
    assert one == caddy.render_relay_caddyfile(list(reversed(ROUTES)), server_name="10.0.0.2")
    assert one.index("/infinity/*") < one.index("/ollama/*") < one.index("/qwen3/*") < one.index("/speaches/*")


def test_relay_api_base_per_engine():
    by_engine = {r["engine"]: caddy.relay_api_base("10.0.0.2", r) for r in ROUTES}
    assert by_engine == {
        "vllm": "https://10.0.0.2:8443/qwen3/v1",
        "ollama": "https://10.0.0.2:8443/ollama",
        "infinity": "https://10.0.0.2:8443/infinity",
        "speaches": "https://10.0.0.2:8443/speaches/v1",
    }
    assert caddy.relay_api_base("fd00::2", ROUTES[0], port=9443) == "https://[fd00::2]:9443/qwen3/v1"
    assert caddy.relay_api_base("gpu-02.lan", ROUTES[0]) == "https://gpu-02.lan:8443/qwen3/v1"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "Qwen 3"}, "relay route name"),
        ({"engine": "llamacpp"}, "engine 'llamacpp' is not one of"),
        ({"upstream": "qwen3:8000 {\n\trespond 200\n}"}, "upstream"),
        ({"upstream": "qwen3"}, "upstream"),
        ({"key_env": "key}"}, "key_env"),
    ],
)
def test_relay_refuses_values_that_would_change_the_caddyfile(change, message):
    with pytest.raises(ValueError, match=message):
        caddy.render_relay_caddyfile([{**ROUTES[0], **change}], server_name="10.0.0.2")


def test_relay_refuses_no_route_a_repeated_name_and_a_bad_server_name():
    with pytest.raises(ValueError, match="at least one engine route"):
        caddy.render_relay_caddyfile([], server_name="10.0.0.2")
    with pytest.raises(ValueError, match="must be unique"):
        caddy.render_relay_caddyfile([ROUTES[0], {**ROUTES[1], "name": "qwen3"}], server_name="10.0.0.2")
    with pytest.raises(ValueError, match="server_name"):
        caddy.render_relay_caddyfile(ROUTES, server_name="10.0.0.2 {")


# --- edge ------------------------------------------------------------------------------------------


def gateway_proxy(config: dict) -> dict:
    [proxy] = [h for h in handlers(config, "reverse_proxy") if len(h["upstreams"]) >= 1 and h["upstreams"][0]["dial"].startswith("litellm")]
    return proxy


@pytest.mark.parametrize("shape", ["edge-acme", "edge-internal", "edge-off"])
def test_edge_balances_every_request_over_healthy_replicas(adapted, shape):
    proxy = gateway_proxy(adapted[shape])
    assert [u["dial"] for u in proxy["upstreams"]] == UPSTREAMS
    lb = proxy["load_balancing"]
    assert lb["selection_policy"] == {"policy": "round_robin"}
    assert lb["try_duration"] == 15_000_000_000 and lb["try_interval"] == 250_000_000
    assert proxy["health_checks"]["active"] == {"uri": "/health/readiness", "interval": 5_000_000_000, "timeout": 3_000_000_000}
    assert proxy["health_checks"]["passive"]["fail_duration"] == 10_000_000_000
    # Passive checks must not count LiteLLM's own 5xx (an engine down) against the replica.
    assert "unhealthy_status" not in proxy["health_checks"]["passive"]
    assert proxy["flush_interval"] == -1
    transport = proxy["transport"]
    assert transport["keep_alive"] == {"enabled": False}
    assert transport["dial_timeout"] == 5_000_000_000
    # Nothing bounds a long generation: no response-header, read or write timeout.
    assert not {"response_header_timeout", "read_timeout", "write_timeout"} & set(transport)


@pytest.mark.parametrize("shape", ["edge-acme", "edge-internal", "edge-off", "relay"])
def test_server_timeouts_bound_only_headers_and_idle_connections(adapted, shape):
    for server in servers(adapted[shape]).values():
        assert server["read_header_timeout"] == 30_000_000_000
        assert server["idle_timeout"] == 300_000_000_000
        assert not {"read_timeout", "write_timeout"} & set(server)
        assert server["protocols"] == ["h1", "h2"]


@pytest.mark.parametrize("shape", ["edge-acme", "edge-internal", "edge-off", "relay"])
def test_request_bodies_up_to_200_mb(adapted, shape):
    limits = handlers(adapted[shape], "request_body")
    assert limits and all(h["max_size"] == 200_000_000 for h in limits)


def test_acme_edge_gets_certificates_with_the_email_redirects_and_sends_hsts(adapted):
    config = adapted["edge-acme"]
    [policy] = config["apps"]["tls"]["automation"]["policies"]
    assert sorted(policy["subjects"]) == ["chat.example.com", "llm.example.com"]
    assert all(issuer.get("email") == "ops@example.com" for issuer in policy["issuers"])
    main = server_on(config, ":443")
    assert "automatic_https" not in main
    hsts = [h for h in handlers(main, "headers") if "Strict-Transport-Security" in h["response"]["set"]]
    assert len(hsts) == 2 and all(h["response"]["set"]["Strict-Transport-Security"] == ["max-age=31536000"] for h in hsts)
    hosts = [m["host"] for r in main["routes"] for m in r.get("match", []) if "host" in m]
    assert sorted(h for hs in hosts for h in hs) == ["chat.example.com", "llm.example.com"]


def test_internal_edge_serves_the_stack_ca_certificate_for_any_name(adapted, tls_dir):
    config = adapted["edge-internal"]
    main = server_on(config, ":443")
    assert main["automatic_https"] == {"disable": True}
    policies = main["tls_connection_policies"]
    # The route host's own policy, then the catch-all one that also answers clients sending no SNI.
    assert [p.get("match") for p in policies] == [{"sni": ["chat.example.com"]}, None]
    assert policies[-1]["default_sni"] == "llm.lan"
    assert all(p["certificate_selection"] == policies[0]["certificate_selection"] for p in policies)
    assert {f["certificate"] for f in config["apps"]["tls"]["certificates"]["load_files"]} == {str(tls_dir / "server.crt")}
    assert "automation" not in config["apps"]["tls"]
    assert "Strict-Transport-Security" not in json.dumps(config)


def test_off_edge_is_plain_http_on_the_given_port(adapted):
    config = adapted["edge-off"]
    main = server_on(config, ":8080")
    assert "tls_connection_policies" not in main and "tls" not in config["apps"]


def test_edge_publishes_extra_routes_by_path_and_by_host(adapted):
    for shape in ("edge-acme", "edge-internal", "edge-off"):
        dials = {h["upstreams"][0]["dial"]: h for h in handlers(adapted[shape], "reverse_proxy")}
        assert {"grafana:3000", "open-webui:8080"} <= set(dials)
        assert dials["grafana:3000"]["flush_interval"] == -1
    text = caddy.render_edge_caddyfile(tls="off", upstreams=UPSTREAMS, extra_routes=EXTRA)
    assert "@extra0 path /grafana /grafana/*" in text
    assert "http://chat.example.com:80 {" in text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tls": "acme", "domain": "llm.example.com"}, "needs a domain and an email"),
        ({"tls": "acme", "domain": "10.0.0.2", "email": "ops@example.com"}, "needs a DNS name"),
        ({"tls": "acme", "domain": "llm.example.com", "email": "ops@example.com}"}, "acme email"),
        ({"tls": "internal"}, "needs a domain"),
        ({"tls": "self-signed"}, "tls must be acme, internal or off"),
        ({"tls": "off", "upstreams": []}, "at least one gateway upstream"),
        ({"tls": "off", "upstreams": ["litellm:4000", "litellm:4000"]}, "must be unique"),
        ({"tls": "off", "extra_routes": [{"upstream": "grafana:3000"}]}, "exactly one of path, host or port"),
        ({"tls": "off", "extra_routes": [{"path": "/g", "host": "g.lan", "upstream": "grafana:3000"}]}, "exactly one of path, host or port"),
        ({"tls": "off", "extra_routes": [{"path": "/g", "upstream": "grafana:3000"}, {"path": "/g", "upstream": "x:1"}]}, "given twice"),
        ({"tls": "off", "extra_routes": [{"path": "/g {", "upstream": "grafana:3000"}]}, "edge route path"),
    ],
)
def test_edge_refuses_incomplete_or_unsafe_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        caddy.render_edge_caddyfile(**{"upstreams": UPSTREAMS, **kwargs})


def test_edge_caddyfile_is_stable():
    def render():
        return caddy.render_edge_caddyfile(tls="acme", domain="llm.example.com", email="ops@example.com", upstreams=UPSTREAMS, extra_routes=EXTRA)

    assert render() == render()


def test_split_names_sorts_certificate_names_by_kind():
    assert caddy.split_names(["llm.lan", "10.0.0.2", "Chat.LAN", "10.0.0.2", "fd00::2"]) == (
        ["chat.lan", "llm.lan"],
        ["10.0.0.2", "fd00::2"],
    )


# --- CaddyProxy under mocks ------------------------------------------------------------------------

GIVEN_ENGINE_KEY = "given-engine-key-5f0c7e"


def build_relay() -> None:
    ca = stack_ca.StackCA("stack-ca", {})
    parent = pulumi.ComponentResource("test:index:Relay", "relay-gpu-02")
    cert = ca.issue_server_certificate("relay-gpu-02", ip_addresses=["10.0.0.2"], parent=parent)
    ollama_key = container.generated_secret("ollama-relay-key", parent)
    relay = caddy.CaddyProxy(
        "relay-gpu-02-caddy",
        {
            "network_name": "llm",
            "caddyfile": caddy.render_relay_caddyfile(ROUTES, server_name="10.0.0.2"),
            "files": caddy.tls_files(cert.cert_pem, cert.private_key_pem),
            "secret_envs": {
                "VLLM_QWEN3_API_KEY": pulumi.Output.secret(GIVEN_ENGINE_KEY),
                "OLLAMA_API_KEY": ollama_key,
                "INFINITY_API_KEY": pulumi.Output.secret("infinity-key-0a9d"),
                "SPEACHES_API_KEY": pulumi.Output.secret("speaches-key-77b2"),
            },
            "ports": [{"internal": caddy.RELAY_PORT, "external": 8443, "ip": "10.0.0.2"}],
            "hostname": "relay",
        },
        opts=pulumi.ResourceOptions(parent=parent),
    )
    pulumi.export("caddyfile", relay.caddyfile)


@pytest.fixture
def relay_plan(monkeypatch):
    return run_library(build_relay, monkeypatch)


def relay_container(plan):
    return container_named(plan, "relay-gpu-02-caddy")


def test_proxy_runs_the_pinned_image_with_the_caddyfile(relay_plan):
    image = relay_plan.named("relay-gpu-02-caddy-image")
    assert image.inputs == {"name": "caddy:2.11.4", "keepLocally": True}
    c = relay_container(relay_plan).inputs
    assert c["image"].startswith("sha256:")
    assert c["command"] == ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
    assert c["name"] == "relay" and c["networksAdvanced"] == [{"name": "llm", "aliases": ["relay"]}]
    assert c["restart"] == "unless-stopped" and c["wait"] is True


def test_proxy_uploads_caddyfile_certificate_and_key_and_keeps_the_key_secret(relay_plan):
    uploads = relay_container(relay_plan).inputs["uploads"]
    # The SDK marks the whole `uploads` input secret when one file (the key) is: the Caddyfile stays readable
    # in the component's plain `caddyfile` output.
    assert is_secret(uploads)
    assert [u["file"] for u in reveal(uploads)] == ["/etc/caddy/Caddyfile", "/etc/caddy/tls/server.crt", "/etc/caddy/tls/server.key"]
    caddyfile, cert, key = reveal(uploads)
    assert caddyfile["content"] == relay_plan.outputs["caddyfile"] and not is_secret(relay_plan.outputs["caddyfile"])
    assert cert["content"] == mock_pem("CERTIFICATE", "relay-gpu-02-tls-cert")
    assert key["content"] == mock_pem("EC PRIVATE KEY", "relay-gpu-02-tls-key")


def test_proxy_uploads_without_a_key_stay_plain_even_with_secret_envs(monkeypatch):
    def build():
        caddy.CaddyProxy(
            "edge",
            {
                "network_name": "llm",
                "caddyfile": caddy.render_edge_caddyfile(tls="off", upstreams=["litellm:4000"]),
                "files": [{"path": caddy.CERT_FILE, "content": "certificate"}],
                "secret_envs": {"SOME_KEY": pulumi.Output.secret("sk-some-key")},
            },
        )

    uploads = container_named(run_library(build, monkeypatch), "edge").inputs["uploads"]
    assert not is_secret(uploads) and not any(is_secret(u["content"]) for u in uploads)


def test_proxy_passes_bearer_keys_as_secret_envs_sorted(relay_plan):
    envs = relay_container(relay_plan).inputs["envs"]
    assert is_secret(envs)
    names = [e.split("=", 1)[0] for e in reveal(envs)]
    assert names == ["INFINITY_API_KEY", "OLLAMA_API_KEY", "SPEACHES_API_KEY", "VLLM_QWEN3_API_KEY"]
    assert f"VLLM_QWEN3_API_KEY={GIVEN_ENGINE_KEY}" in reveal(envs)


def test_no_key_or_bearer_key_in_plaintext_anywhere(relay_plan):
    generated = relay_plan.named("ollama-relay-key").outputs["result"]
    secrets = [GIVEN_ENGINE_KEY, "infinity-key-0a9d", "speaches-key-77b2", generated, *private_key_markers(relay_plan)]
    assert plaintext_holding(relay_plan, secrets) == []
    assert not any(s in relay_plan.outputs["caddyfile"] for s in secrets)


def test_proxy_state_volumes_are_retained(relay_plan):
    for name, path in (("relay-data", "/data"), ("relay-config", "/config")):
        volume = [r for r in relay_plan.of_type("docker:index/volume:Volume") if r.inputs["name"] == name]
        assert len(volume) == 1 and volume[0].retain_on_delete
        assert {"volumeName": name, "containerPath": path} in relay_container(relay_plan).inputs["volumes"]


def test_proxy_publishes_the_given_port_on_the_given_address(relay_plan):
    assert relay_container(relay_plan).inputs["ports"] == [
        {"internal": 8443, "external": 8443, "ip": "10.0.0.2"}
    ]


def test_proxy_healthcheck_uses_busybox_wget_on_the_health_listener(relay_plan):
    health = relay_container(relay_plan).inputs["healthcheck"]
    assert health["tests"] == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:2020/health"]
    assert f"http://:{caddy.HEALTH_PORT} {{\n\tbind 127.0.0.1\n\trespond /health 200\n}}" in relay_plan.outputs["caddyfile"]


def test_proxy_inputs_are_the_same_on_every_run(monkeypatch):
    def snapshot():
        plan = run_library(build_relay, monkeypatch)
        return json.dumps(sorted((r.type, r.name, r.inputs) for r in plan.resources), sort_keys=True)

    assert snapshot() == snapshot()


def test_a_caddyfile_holding_a_secret_value_is_refused():
    # What CaddyProxy applies to its Caddyfile and secret envs. Tested directly: under mocks the error would
    # surface from a leaked future in a later test's run.
    text = caddy.render_edge_caddyfile(tls="off", upstreams=["litellm:4000"])
    assert caddy.checked_caddyfile(text, ["sk-some-key", ""]) == text
    with pytest.raises(ValueError, match=r"holds a secret value: read it from an env with \{env.NAME\}"):
        caddy.checked_caddyfile(text + "# sk-pasted-key\n", ["other", "sk-pasted-key"])


def test_proxy_default_binds_published_ports_to_loopback(monkeypatch):
    def build():
        caddy.CaddyProxy(
            "edge",
            {
                "network_name": "llm",
                "caddyfile": caddy.render_edge_caddyfile(tls="off", upstreams=["litellm:4000"]),
                "ports": [{"internal": 80, "external": 8080}],
            },
        )

    plan = run_library(build, monkeypatch)
    c = container_named(plan, "edge").inputs
    assert c["ports"] == [{"internal": 80, "external": 8080, "ip": "127.0.0.1"}]
    assert c["name"] == "caddy" and [reveal(u)["file"] for u in c["uploads"]] == ["/etc/caddy/Caddyfile"]
