"""Contract test: each stack file rendered by the real program, served by the real LiteLLM proxy.

Per stack (prod, dev): the gateway container's /app/config.yaml exactly as rendered, the envs its
container gets (without DATABASE_URL: no database runs), stand-ins started with each engine
container's command line and envs under the config's host names and ports, the models pulled as
`pulumi up` pulls them; then the smoke check and the requests each engine recorded."""

from __future__ import annotations

import json
import re
import secrets
import socket
from typing import Any, Iterator

import httpx
import pytest

from config import smoke
from tests.contract import harness
from tests.contract.harness import CONFIG_FILE, Deployment, Rendered, WireCall

pytestmark = pytest.mark.contract

# Stack -> whether a real redis-server runs behind its gateway. prod runs without one (LiteLLM must
# start and route with its Redis unreachable); dev runs with one when Debian's redis-server is
# installed, which checks the Redis wiring and spares the ~8 s LiteLLM spends retrying Redis at start.
STACKS = {"prod": False, "dev": harness.redis_available()}


@pytest.fixture(scope="module", params=sorted(STACKS, reverse=True))
def stack(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, harness.stack_file(request.param)


@pytest.fixture(scope="module")
def rendered(stack: tuple[str, dict[str, Any]]) -> Rendered:
    name, raw = stack
    return harness.render(raw, name)


@pytest.fixture(scope="module")
def wire(stack: tuple[str, dict[str, Any]], rendered: Rendered) -> dict[str, WireCall]:
    return harness.wire_expectations(stack[1], rendered)


@pytest.fixture(scope="module")
def deployment(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory, litellm_installed: str) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp(f"contract-{rendered.stack}")
    with harness.deploy(rendered, workdir, redis=STACKS[rendered.stack]) as running:
        yield running


# --- the rendered files, before anything runs ------------------------------------------------------


def test_the_gateway_loads_the_uploaded_config_and_gets_every_env_it_names(rendered: Rendered) -> None:
    command = list(rendered.gateway_command)
    assert command[command.index("--config") + 1] == CONFIG_FILE
    referenced = set(re.findall(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)", rendered.config_text))
    assert referenced, "the config names no env at all"
    assert referenced <= set(rendered.gateway_env), f"envs the config names but the container lacks: {referenced - set(rendered.gateway_env)}"
    # The uploaded file is kept in Pulumi state in clear: no secret value may be in it.
    leaked = [name for name, value in rendered.gateway_env.items() if len(value) >= 12 and value in rendered.config_text]
    assert not leaked, f"secret values of {leaked} are written into {CONFIG_FILE}"


def test_every_host_the_config_names_is_a_container_on_the_network(rendered: Rendered) -> None:
    hosts = harness.api_bases(rendered.config)
    reached = {rendered.engine_of_host(host).name for host in hosts}
    assert reached == {e.name for e in rendered.engines}, "an engine container no model entry reaches"
    redis_host = rendered.config["router_settings"]["redis_host"]
    redis = next(r for r in rendered.plan.of_type(harness.CONTAINER) if r.name == harness.REDIS_CONTAINER)
    assert redis_host in [a for net in redis.inputs["networksAdvanced"] for a in net["aliases"]]


def test_the_gateway_and_its_redis_share_the_generated_password(rendered: Rendered) -> None:
    router = rendered.config["router_settings"]
    assert router["redis_password"] == "os.environ/REDIS_PASSWORD"
    assert rendered.gateway_env["REDIS_PASSWORD"] == rendered.redis_env["REDIS_PASSWORD"]
    # The image ignores REDIS_PASSWORD unless the command passes it to --requirepass.
    assert '--requirepass "$REDIS_PASSWORD"' in " ".join(rendered.redis_command)


def test_each_backend_key_the_gateway_gets_is_its_engines_key(rendered: Rendered, wire: dict[str, WireCall]) -> None:
    for entry in rendered.config["model_list"]:
        call = wire[entry["model_name"]]
        reference = entry["litellm_params"].get("api_key")
        if call.key is None:
            assert reference is None, f"{call.name}: an api_key for an engine without auth"
            continue
        assert reference and reference.startswith("os.environ/"), f"{call.name}: api_key must name an env, got {reference!r}"
        assert rendered.gateway_env[reference.removeprefix("os.environ/")] == call.key, f"{call.name}: the gateway's key is not {call.container}'s"


def test_models_an_engine_does_not_fetch_itself_are_pulled_by_the_plan(rendered: Rendered, wire: dict[str, WireCall]) -> None:
    # Ollama and Speaches download nothing on first request; vLLM and Infinity fetch at start.
    must_pull = {(c.container, c.model) for c in wire.values() if rendered.engine(c.container).engine in ("ollama", "speaches")}
    assert {(p.container, p.model) for p in rendered.pulls} == must_pull


# --- the running gateway ---------------------------------------------------------------------------


def test_smoke_check_with_the_stack_outputs_passes_every_route(deployment: Deployment) -> None:
    outputs = deployment.rendered.outputs
    assert (deployment.workdir / "config.yaml").read_text() == deployment.rendered.config_text  # what LiteLLM loaded
    code, text, rows = harness.run_smoke(deployment, "--models-json", deployment.rendered.models_json())
    assert code == 0, text
    assert rows == harness.expected_rows(outputs)
    served = {entry["model_name"] for entry in deployment.rendered.config["model_list"]}
    assert {row[1] for row in rows} == served, "the stack outputs and the gateway config list different models"


def test_smoke_check_discovers_the_same_models_from_the_gateway(deployment: Deployment) -> None:
    code, text, rows = harness.run_smoke(deployment)
    assert code == 0, text
    assert rows == harness.expected_rows(deployment.rendered.outputs)


def test_each_engine_receives_the_call_its_container_expects(deployment: Deployment, wire: dict[str, WireCall]) -> None:
    """One model at a time: only its engine is called, on its own path, with its model name and key."""
    tool_models = set(deployment.rendered.outputs["toolModels"])
    for call in wire.values():
        for kind in [call.kind] + (["tools"] if call.name in tool_models else []):
            deployment.clear_requests()
            selection = {"models": {}, "toolModels": [call.name]} if kind == "tools" else {call.kind: [call.name]}
            code, text, _ = harness.run_smoke(deployment, "--models-json", json.dumps(selection))
            assert code == 0, text
            received = {name: backend.requests() for name, backend in deployment.backends.items()}
            others = {name: [r["path"] for r in reqs] for name, reqs in received.items() if name != call.container and reqs}
            assert not others, f"{call.name} ({kind}) also reached {others}"
            requests = received[call.container]
            posts = [r for r in requests if r["method"] == "POST"]
            assert [r["path"] for r in posts] == [call.path], f"{call.name} ({kind}): {[(r['method'], r['path']) for r in requests]}"
            body = posts[0]["body"]
            assert body["model"] == call.model, f"{call.name}: the engine got model {body['model']!r}"
            for request in requests:  # any other call (LiteLLM's GET /models) carries the key too
                if call.key is None:
                    assert "authorization" not in request["headers"], f"{call.name}: a key sent to an engine without auth"
                else:
                    assert request["headers"].get("authorization") == f"Bearer {call.key}", f"{call.name}: wrong or missing key"
            if kind == "tools":
                assert body["tools"][0]["function"]["name"] == smoke.TOOL["function"]["name"]
            if call.kind == "chat" and deployment.rendered.engine(call.container).engine == "ollama":
                assert body["stream"] is False
            if call.kind == "transcription":
                assert posts[0]["headers"]["content-type"].startswith("multipart/form-data")
                assert body["file"]["size"] > 0


def _direct_call(call: WireCall, model: str, path: str) -> tuple[str, dict[str, Any]]:
    """Keyword arguments of an httpx request that makes this call straight to the engine."""
    if call.kind == "chat":
        return path, {"json": {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False}}
    if call.kind == "embedding":
        return path, {"json": {"model": model, "input": ["hi"]}}
    if call.kind == "rerank":
        return path, {"json": {"model": model, "query": "hi", "documents": ["hi", "ho"]}}
    if call.kind == "transcription":
        return path, {"files": {"file": ("a.wav", smoke.sine_wav(0.2), "audio/wav")}, "data": {"model": model}}
    return path, {"json": {"model": model, "input": "hi", "voice": "x", "response_format": "wav"}}


def test_the_standins_reject_what_a_wrong_wiring_would_send(deployment: Deployment, wire: dict[str, WireCall]) -> None:
    """Negative controls: the checks above mean something only if the stand-ins refuse a wrong
    prefix, a missing or wrong key and an unknown model, and serve the right call."""
    for call in wire.values():
        backend = deployment.backends[call.container]
        wrong_path = call.path.removeprefix("/v1") if call.path.startswith("/v1/") else "/v1" + call.path

        def post(model: str, path: str, key: str | None) -> int:
            target, kwargs = _direct_call(call, model, path)
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return httpx.post(backend.url + target, headers=headers, timeout=10, **kwargs).status_code

        assert post(call.model, call.path, call.key) == 200, f"{call.name}: the right call is refused"
        assert post(call.model, wrong_path, call.key) == 404, f"{call.name}: {wrong_path} is served"
        assert 400 <= post("no-such-model-" + secrets.token_hex(4), call.path, call.key) < 500, f"{call.name}: unknown model served"
        if call.key is not None:
            assert post(call.model, call.path, None) in (401, 403), f"{call.name}: served without a key"
            assert post(call.model, call.path, secrets.token_hex(16)) in (401, 403), f"{call.name}: served with a wrong key"


def test_the_gateway_routes_with_its_redis_down_and_authenticates_when_it_is_up(deployment: Deployment) -> None:
    """prod: nothing listens where `litellm-redis` points; dev: redis-server runs with the Redis
    container's password (when installed). Either way every route answers."""
    stack, router = deployment.rendered.stack, deployment.rendered.config["router_settings"]
    code, text, _ = harness.run_smoke(deployment, "--models-json", deployment.rendered.models_json())
    assert code == 0, text
    redis_errors = [line for line in deployment.gateway_log.read_text().splitlines() if "redis" in line.lower() and "error" in line.lower()]
    if deployment.redis is None:
        address = (deployment.hosts[router["redis_host"]], int(router["redis_port"]))
        with pytest.raises(ConnectionRefusedError), socket.create_connection(address, timeout=2):
            pass
        readiness = httpx.get(deployment.url + "/health/readiness", timeout=10)
        assert readiness.status_code == 200, readiness.text
        harness.observe(
            f"{stack}: no Redis at {router['redis_host']}:{router['redis_port']}: LiteLLM 1.108.7 ready in "
            f"{deployment.gateway_start_s:.1f} s, readiness {readiness.json().get('status')!r}, every route served, "
            f"{len(redis_errors)} Redis error lines in its log"
        )
        return
    # redis-server was started with the Redis container's password; the gateway has its own env copy.
    clients = harness.redis_call(deployment.redis, deployment.rendered.redis_env["REDIS_PASSWORD"], "CLIENT", "LIST")
    connections = [line for line in clients.decode().splitlines() if line.startswith("id=")]
    assert len(connections) >= 2, f"only this test is connected to Redis: {clients!r}"
    assert not redis_errors, redis_errors[:5]
    harness.observe(f"{stack}: with redis-server: LiteLLM ready in {deployment.gateway_start_s:.1f} s, {len(connections) - 1} Redis connection(s)")
