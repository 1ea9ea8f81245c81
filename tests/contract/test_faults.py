"""Fault cases in the contract harness: an engine down, a fallback taking over, a wrong master key.

The stack is Pulumi.prod.yaml with one fallback added (`gateway.fallbacks: {chat-a: [chat-b]}`,
chat-a served by vLLM, chat-b by Ollama), rendered by the program and deployed like the contract
test. Retries and timeouts are the rendered ones (prod: num_retries 3, request_timeout 3600)."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import openai
import pytest

from config import smoke
from tests.contract import harness
from tests.contract.harness import Deployment, Rendered, WireCall

pytestmark = pytest.mark.contract

# A stopped engine refuses connections at once; LiteLLM then retries num_retries times with a
# growing pause (about 9 s in all for num_retries 3, measured) before it answers the client.
# request_timeout (3600 s in prod) only bounds an engine that accepts and never answers.
FAILURE_BOUND_S = 30.0
# A single-deployment model group must serve again as soon as its engine is back (no cooldown lock-out).
RECOVERY_BOUND_S = 5.0


@dataclass(frozen=True)
class FaultStack:
    raw: dict[str, Any]
    rendered: Rendered
    wire: dict[str, WireCall]
    chat_a: str
    chat_b: str


@pytest.fixture(scope="module")
def fault_stack() -> FaultStack:
    raw = harness.stack_file("prod")
    if not raw.get("vllm") or not (raw.get("ollama") or {}).get("models"):
        pytest.skip("Pulumi.prod.yaml has no vLLM or no Ollama model to fall back between")
    chat_a, chat_b = raw["vllm"][0]["name"], raw["ollama"]["models"][0]["name"]
    raw["gateway"] = {**raw.get("gateway", {}), "fallbacks": {chat_a: [chat_b]}}
    rendered = harness.render(raw, "prod")
    return FaultStack(raw, rendered, harness.wire_expectations(raw, rendered), chat_a, chat_b)


@pytest.fixture(scope="module")
def deployment(fault_stack: FaultStack, tmp_path_factory: pytest.TempPathFactory, litellm_installed: str) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("faults")
    # With a real Redis when installed: the router's state is where production keeps it.
    with harness.deploy(fault_stack.rendered, workdir, redis=harness.redis_available()) as running:
        yield running


@dataclass(frozen=True)
class Outcome:
    kind: str
    name: str
    seconds: float
    detail: str = ""
    error: BaseException | None = None


class HttpStatusError(Exception):
    """A non-2xx answer of a plain HTTP call, with the full message the client gets."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code, self.message = status_code, message


def call_rerank(session: smoke.Session, model: str) -> str:
    """The smoke check's rerank call, keeping the whole error message (the smoke check shortens it)."""
    reply = httpx.post(
        f"{session.url}/rerank", timeout=session.timeout, headers={"Authorization": f"Bearer {session.key}"},
        json={"model": model, "query": "Where is Paris?", "documents": ["Paris is in France.", "Bananas."]},
    )
    if reply.status_code >= 400:
        try:
            message = reply.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = reply.text
        raise HttpStatusError(reply.status_code, message)
    return f"top document {reply.json()['results'][0]['index']}"


def call_every_route(deployment: Deployment) -> list[Outcome]:
    """Every route of the stack outputs, all at once, each call timed; failures kept, not raised."""
    session = smoke.Session(url=deployment.url, key=deployment.master_key, timeout=120, voice=smoke.DEFAULT_VOICE)
    session.openai()  # one client, created before the threads share it
    calls = {route.kind: route.call for route in smoke.ROUTES} | {"rerank": call_rerank}
    outputs = deployment.rendered.outputs
    todo = [(kind, name) for kind, names in outputs["models"].items() for name in names]
    todo += [("tools", name) for name in outputs["toolModels"]]

    def timed(kind: str, name: str) -> Outcome:
        start = time.monotonic()
        try:
            detail = calls[kind](session, name)
        except Exception as error:  # noqa: BLE001 - the outcome records it
            return Outcome(kind, name, time.monotonic() - start, smoke.describe_error(error), error)
        return Outcome(kind, name, time.monotonic() - start, detail)

    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        return list(pool.map(lambda item: timed(*item), todo))


def readable_status(outcome: Outcome) -> tuple[int, str]:
    """Status code and message of a failed call, as the client sees them."""
    error = outcome.error
    # The openai client for the OpenAI routes; plain HTTP for /rerank, which the client lacks.
    assert isinstance(error, (openai.APIStatusError, HttpStatusError)), f"{outcome.name}: unreadable failure {error!r}"
    return error.status_code, error.message


def wait_until_served(deployment: Deployment, kind: str, name: str, bound: float) -> float:
    """Seconds until a route answers again (fails after `bound`)."""
    session = smoke.Session(url=deployment.url, key=deployment.master_key, timeout=30, voice=smoke.DEFAULT_VOICE)
    call = next(route.call for route in smoke.ROUTES if route.kind == kind)
    start = time.monotonic()
    while True:
        try:
            call(session, name)
            return time.monotonic() - start
        except Exception as error:  # noqa: BLE001
            if time.monotonic() - start > bound:
                raise AssertionError(f"{name} still fails {bound:.0f} s after its engine is back: {smoke.describe_error(error)}") from None
            time.sleep(0.2)


def engine_container(fault_stack: FaultStack, engine: str) -> str:
    found = [e.name for e in fault_stack.rendered.engines if e.engine == engine]
    if not found:
        pytest.skip(f"the prod stack has no {engine} container")
    return found[0]


@pytest.mark.parametrize("engine", ["ollama", "infinity", "speaches"])
def test_with_one_engine_down_the_others_answer_and_its_routes_fail_fast_and_readably(
    deployment: Deployment, fault_stack: FaultStack, engine: str
) -> None:
    container = engine_container(fault_stack, engine)
    fallbacks = fault_stack.raw["gateway"]["fallbacks"]
    # Names served by this engine that have no fallback on a running engine.
    broken = {c.name for c in fault_stack.wire.values() if c.container == container and not any(
        fault_stack.wire[target].container != container for target in fallbacks.get(c.name, []))}
    assert broken, f"nothing is served by {container}"
    backend = deployment.backends[container]
    backend.stop()
    try:
        outcomes = call_every_route(deployment)
    finally:
        backend.start()
    failed = {o.name for o in outcomes if o.error is not None}
    assert failed == broken, {o.name: o.detail for o in outcomes if o.error is not None}
    for outcome in outcomes:
        if outcome.error is None:
            continue
        status, message = readable_status(outcome)
        assert outcome.seconds < FAILURE_BOUND_S, f"{outcome.name} took {outcome.seconds:.1f} s to fail"
        assert status >= 500, f"{outcome.name}: HTTP {status} for an engine that is down"
        assert outcome.name in message and ("connect" in message.lower()), f"{outcome.name}: {message}"
        harness.observe(
            f"{engine} down: {outcome.kind} {outcome.name} failed in {outcome.seconds:.1f} s with HTTP {status}: "
            f"{' '.join(message.split())[:110]}"
        )
    for name in sorted(broken):
        kind = next(o.kind for o in outcomes if o.name == name)
        recovered = wait_until_served(deployment, kind, name, RECOVERY_BOUND_S)
        harness.observe(f"{engine} back: {name} answered again after {recovered:.2f} s")


def test_chat_answers_from_its_fallback_when_its_engine_is_down(deployment: Deployment, fault_stack: FaultStack) -> None:
    a, b = fault_stack.wire[fault_stack.chat_a], fault_stack.wire[fault_stack.chat_b]
    assert a.container != b.container
    primary, fallback = deployment.backends[a.container], deployment.backends[b.container]
    client = openai.OpenAI(base_url=f"{deployment.url}/v1", api_key=deployment.master_key, max_retries=0, timeout=120)
    deployment.clear_requests()

    def through_fallback() -> tuple[Any, float]:
        start = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(
            model=fault_stack.chat_a, messages=[{"role": "user", "content": "Say ok."}]
        )
        return raw, time.monotonic() - start

    primary.stop()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            fallback_call = pool.submit(through_fallback)
            every_route = pool.submit(call_every_route, deployment)
            raw, seconds = fallback_call.result()
            others = [o for o in every_route.result() if o.error is not None]
    finally:
        primary.start()
    reply = raw.parse()
    assert reply.choices[0].message.content, "no answer"
    assert raw.headers.get("x-litellm-model-group") == fault_stack.chat_b
    assert raw.headers.get("x-litellm-attempted-fallbacks") == "1"
    assert seconds < FAILURE_BOUND_S
    answered = [r for r in fallback.requests() if r["method"] == "POST"]
    assert answered and all(r["path"] == b.path and r["body"]["model"] == b.model for r in answered)
    assert not others, {o.name: o.detail for o in others}  # every route answers, chat-a through its fallback
    harness.observe(
        f"{a.container} down: {fault_stack.chat_a} answered by its fallback {fault_stack.chat_b} in {seconds:.1f} s "
        f"(x-litellm-attempted-fallbacks: 1)"
    )
    recovered = wait_until_served(deployment, "chat", fault_stack.chat_a, RECOVERY_BOUND_S)
    deployment.clear_requests()
    reply = client.chat.completions.with_raw_response.create(model=fault_stack.chat_a, messages=[{"role": "user", "content": "Say ok."}])
    assert reply.headers.get("x-litellm-model-group") == fault_stack.chat_a
    assert [r["path"] for r in primary.requests() if r["method"] == "POST"] == [a.path]
    harness.observe(f"{a.container} back: {fault_stack.chat_a} served by its own engine again after {recovered:.2f} s")


@pytest.mark.parametrize("key", ["sk-wrong", "not-an-sk-key"])
def test_a_wrong_master_key_is_rejected_before_any_engine(deployment: Deployment, fault_stack: FaultStack, key: str) -> None:
    wrong = key + "-" + secrets.token_hex(12)
    client = openai.OpenAI(base_url=f"{deployment.url}/v1", api_key=wrong, max_retries=0, timeout=30)
    deployment.clear_requests()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=fault_stack.chat_a, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIStatusError) as listing:
        client.models.list()
    for error in (caught.value, listing.value):
        # LiteLLM checks any key but the master key against its database; without one (as here)
        # 1.108.7 answers 400 "No connected db." where a deployment with Postgres answers 401.
        assert error.status_code in (400, 401), error
        if error.status_code == 400:
            assert "No connected db" in error.message
    assert not {name: b.requests() for name, b in deployment.backends.items() if b.requests()}, "a wrong key reached an engine"
    harness.observe(f"wrong master key ({key}...): HTTP {caught.value.status_code} {caught.value.message!r}; no engine called")


def test_no_key_at_all_is_rejected_before_any_engine(deployment: Deployment, fault_stack: FaultStack) -> None:
    deployment.clear_requests()
    body = {"model": fault_stack.chat_a, "messages": [{"role": "user", "content": "hi"}]}
    reply = httpx.post(f"{deployment.url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code >= 400
    assert not {name: b.requests() for name, b in deployment.backends.items() if b.requests()}, "a call without a key reached an engine"
    harness.observe(f"no Authorization header: HTTP {reply.status_code} {reply.text[:60]!r}; no engine called")
