"""The two-host rehearsal (tests/rehearsal/two_hosts.py) on engines A and B, and what it must show (issue 14);
first, without an engine, its plan and its failover arithmetic."""

from __future__ import annotations

import time

import pytest

from config.plan_diff import REPLACE

from . import docker_api as api
from . import two_hosts
from .rehearsal import Passwords
from .test_engine_smoke import engine  # noqa: F401 (the fixture: skip, or fail under CI, without an engine)


# --- without an engine ---------------------------------------------------------------------------


def test_failover_counts_and_time_to_recover():
    calls = iter([True] * 5 + [False] * 3 + [True] * 12)
    stopped: list[float] = []

    def call():
        time.sleep(0.01)
        ok = next(calls)
        return ok, "" if ok else "HTTP 500"

    result = two_hosts.run_failover(call, lambda: stopped.append(time.monotonic()), 0.0, requests=20, clients=1, stop_after=5)
    assert len(result.calls) == 20 and len(result.failed) == 3 and stopped
    assert all(c.started >= result.stopped_at for c in result.failed)
    last = max(c.ended for c in result.failed)
    assert result.time_to_recover == pytest.approx(last - result.stopped_at)
    assert result.failed_after(10.0) == []
    assert "20 chat requests" in result.summary() and "3 failed" in result.summary()


def test_failover_without_failures_recovers_at_once():
    result = two_hosts.run_failover(lambda: (True, ""), lambda: None, 5.0, requests=12, clients=3, stop_after=4)
    assert result.failed == [] and result.time_to_recover == 0.0 and len(result.calls) == 12


@pytest.fixture(scope="module")
def plans():
    passwords = Passwords()
    before = two_hosts.record_plan(two_hosts.stack_config(4000, 8443), passwords, deployable=False)
    after = two_hosts.record_plan(two_hosts.stack_config(4000, 8443, changed=True), passwords, deployable=False)
    return before, after


def test_placement_of_the_two_host_stack(plans):
    plan, _ = plans
    where = two_hosts.providers(plan)
    assert where[two_hosts.gateway_resource(plan)] == "host-a"
    vllm = {res: p for res, p in where.items() if res.startswith("chat")}
    assert sorted(vllm.values()) == ["host-a", "host-b"], where
    assert {p for res, p in where.items() if "infinity" in res} == {"host-b"}
    assert {p for res, p in where.items() if "relay" in res} == {"host-b"}
    bases = {}
    for d in two_hosts.gateway_deployments(plan):
        bases.setdefault(d["model_name"], []).append(d["litellm_params"]["api_base"])
    assert len(bases["chat"]) == 2 and sum(b.startswith("https://10.214.0.1:8443/") for b in bases["chat"]) == 1, bases
    assert all(b.startswith("https://10.214.0.1:8443/") for b in bases["bge-small"]), bases


def test_a_model_changed_on_b_touches_only_b_and_the_gateway(plans):
    before, after = plans
    from config.plan_diff import diff_plans, effective

    where = {r.name: r.provider for r in before.resources}
    changes = effective(diff_plans(before, after))
    on_a = {c.name for c in changes if where.get(c.name) == "host-a"}
    assert on_a == {two_hosts.gateway_resource(before)}, changes
    assert {(c.action, c.name) for c in changes if c.name == two_hosts.gateway_resource(before)} == {(REPLACE, "gateway")}


# --- on the engines ------------------------------------------------------------------------------

rehearsal_mark = pytest.mark.rehearsal


@pytest.fixture(scope="module")
def report(engine):  # noqa: F811
    return two_hosts.rehearse()


@rehearsal_mark
def test_every_container_healthy_on_its_host(report):
    assert set(report.placement.values()) == {"host-a", "host-b"}
    assert all(status == "healthy" for status in report.healthy.values()), report.healthy


@rehearsal_mark
def test_only_the_gateway_and_bs_relay_publish(report):
    published = {n: p for n, p in report.published.items() if p}
    [relay] = [n for n in published if report.placement[n] == "host-b"]
    assert [p.split("->")[0] for p in published[relay]] == [f"{two_hosts.B_ADDRESS}:{report.relay_port}"], published
    assert published[report.gateway] == [f"127.0.0.1:{report.port}->4000/tcp"], published
    assert set(published) == {relay, report.gateway}, published


@rehearsal_mark
def test_smoke_green_and_both_replicas_served(report):
    assert [code for code, _ in report.smoke] == [0, 0]
    assert len(report.replica_requests) == 2 and all(n >= 1 for n in report.replica_requests.values()), report.replica_requests


@rehearsal_mark
def test_bs_relay_refuses_what_the_gateway_does_not_need(report):
    relay = report.relay
    assert relay["GET /v1/models with the engine's key"] == "200", relay  # through B's relay, https with the stack CA
    assert relay["GET /v1/models without a key"] == "401", relay
    assert relay["GET /v1/models with another engine's key"] == "401", relay
    assert relay["GET /metrics with the engine's key"] == "403", relay
    # vLLM answers /invocations without any key (the stand-in too, inside B); the relay does not forward it
    assert relay["POST /invocations without a key, inside B"] == "200", relay
    assert relay["POST /invocations with the engine's key"] == "403", relay
    assert relay["POST /invocations without a key"] == "401", relay
    assert relay["GET /v1/models trusting only the system CAs"] == "000 (curl exit 60)", relay  # not a public CA's certificate
    assert report.direct_to_b.startswith("000"), report.direct_to_b


@rehearsal_mark
def test_failover_benchmark_ran(report, capsys):
    failover = report.failover
    with capsys.disabled():  # the benchmark's figures, in CI's output too
        print("\n[benchmark] " + failover.summary())
    assert len(failover.calls) >= 200
    assert failover.stopped_at > 0 and any(c.started > failover.stopped_at for c in failover.calls)


@rehearsal_mark
def test_a_model_changed_on_b_changes_only_the_gateway_on_a(report):
    assert report.gateway in report.untouched_on_a and len(report.untouched_on_a) >= 4, report.untouched_on_a
    assert report.untouched_on_a == {n: n != report.gateway for n in report.untouched_on_a}, report.untouched_on_a


@rehearsal_mark
def test_both_engines_left_clean(report):
    assert report.left_after_cleanup == []
    assert sorted(name for _, name in report.volumes_after_destroy) == report.expected_retained_volumes
