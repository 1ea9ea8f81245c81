"""Failover with the gateway's default settings, on the real LiteLLM 1.108.7: Pulumi.prod.yaml's first vLLM
block as three replicas (`replicas:`, one per GPU of one host; gateway settings all defaults), rendered
by the program; one replica refuses connections, then another stops answering; requests keep succeeding
on the replica that is left. Then prod's Ollama block as two replicas, one refusing.

The figures (failed requests, time to recover, with and without the program's settings) are in
benchmarks/failover.py; this test asserts the behaviour, not timings beyond the documented bound."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from tests.contract import harness
from tests.contract.replicas import (
    ReplicaStack,
    RunningReplicas,
    attempted_retries,
    deploy_replicas,
    interval_bound,
    replica_stack,
    served_by,
)

pytestmark = pytest.mark.contract

# Loopback and a stand-in answer in milliseconds; a request that reached a replica that does not answer
# would wait the request timeout (3600 s here) instead.
CLIENT_TIMEOUT_S = 20.0
# Slack over the documented detection bound (interval + probe timeout) for a loaded CI machine.
DETECTION_SLACK_S = 5.0


@pytest.fixture(scope="module")
def stack() -> ReplicaStack:
    prod = harness.stack_file("prod")
    if not prod.get("vllm"):
        pytest.skip("Pulumi.prod.yaml has no vLLM model")
    return replica_stack(prod["vllm"][0], "vllm", count=3)


@pytest.fixture(scope="module")
def replicas(stack: ReplicaStack, tmp_path_factory: pytest.TempPathFactory, litellm_installed: str) -> Iterator[RunningReplicas]:
    with deploy_replicas(stack, tmp_path_factory.mktemp("failover")) as running:
        yield running


def burst(replicas: RunningReplicas, count: int) -> list[httpx.Response]:
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
        return [replicas.call(client) for _ in range(count)]


def test_every_replica_serves(replicas: RunningReplicas) -> None:
    replies = burst(replicas, 30)
    assert [r.status_code for r in replies] == [200] * 30
    assert len({served_by(r) for r in replies}) == 3, "simple-shuffle spreads requests over every replica"
    assert replicas.health()["healthy_count"] == 3


def test_a_replica_that_refuses_is_retried_elsewhere_then_routed_around(replicas: RunningReplicas) -> None:
    replicas.refuse(2)
    # At once: a refused connection fails in milliseconds and the retry moves to the other replica.
    replies = burst(replicas, 20)
    assert [r.status_code for r in replies] == [200] * 20, [r.text[:200] for r in replies if r.status_code != 200]
    harness.OBSERVED.append(f"failover, refused: {sum(attempted_retries(r) for r in replies)} retries over 20 requests before detection")
    detected = replicas.wait_unhealthy(1, interval_bound(replicas.stack.config_text) + DETECTION_SLACK_S)
    harness.OBSERVED.append(f"failover, refused: the health check marked the replica down after {detected:.1f} s")
    after = burst(replicas, 20)
    assert [r.status_code for r in after] == [200] * 20
    assert [attempted_retries(r) for r in after] == [0] * 20, "after detection no request is sent to the dead replica"


def test_a_replica_that_stops_answering_is_routed_around(replicas: RunningReplicas) -> None:
    replicas.freeze(1)  # replica 2 refuses since the test above; replica 0 is left
    detected = replicas.wait_unhealthy(2, interval_bound(replicas.stack.config_text) + DETECTION_SLACK_S)
    harness.OBSERVED.append(f"failover, no answer: the health check marked the replica down after {detected:.1f} s")
    # A request that reached the frozen replica would wait for the request timeout (the client gives up first).
    replies = burst(replicas, 20)
    assert [r.status_code for r in replies] == [200] * 20
    assert len({served_by(r) for r in replies}) == 1, "the one replica left serves everything"
    assert [attempted_retries(r) for r in replies] == [0] * 20


def test_ollama_replicas_fail_over_too(tmp_path_factory: pytest.TempPathFactory, litellm_installed: str) -> None:
    # LiteLLM reports a refused Ollama connection as an APIConnectionError, which it never cools down
    # (BerriAI/litellm#27362; a refused vLLM connection is a 500, which it does): health-check routing
    # is what takes such a replica out of rotation.
    prod = harness.stack_file("prod")
    if not (prod.get("ollama") or {}).get("models"):
        pytest.skip("Pulumi.prod.yaml has no Ollama model")
    stack = replica_stack(prod["ollama"], "ollama", count=2)
    with deploy_replicas(stack, tmp_path_factory.mktemp("failover-ollama")) as replicas:
        replies = burst(replicas, 20)
        assert [r.status_code for r in replies] == [200] * 20 and len({served_by(r) for r in replies}) == 2
        replicas.refuse(1)
        replies = burst(replicas, 20)
        assert [r.status_code for r in replies] == [200] * 20, [r.text[:200] for r in replies if r.status_code != 200]
        detected = replicas.wait_unhealthy(1, interval_bound(stack.config_text) + DETECTION_SLACK_S)
        harness.OBSERVED.append(f"failover, Ollama refused: the health check marked the replica down after {detected:.1f} s")
        after = burst(replicas, 20)
        assert [r.status_code for r in after] == [200] * 20
        assert [attempted_retries(r) for r in after] == [0] * 20
