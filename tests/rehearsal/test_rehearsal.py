"""The rehearsal (tests/rehearsal/rehearsal.py) on the local Docker engine, and what it must show;
first, without an engine, the pieces it is made of (plan records, the concurrent `up`, the diff).

`pytest -m rehearsal` selects the engine tests. They skip (with the reason) when no engine can be
started, unless LLMSTACK_REHEARSAL_REQUIRED=1 (CI), which makes that a failure: the `engine`
fixture of test_engine_smoke.py decides."""

from __future__ import annotations

import threading
import time

import pytest

from config.plan_diff import diff_plans, effective

from . import docker_api as api
from . import rehearsal
from .test_engine_smoke import engine  # noqa: F401 (the fixture: skip, or fail under CI, without an engine)

rehearsal_mark = pytest.mark.rehearsal


# --- without an engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plans():
    passwords = rehearsal.Passwords()
    return (rehearsal.record_plan(rehearsal.stack_config(4000), passwords),
            rehearsal.record_plan(rehearsal.stack_config(4000, changed=True), passwords), passwords)


def test_passwords_random_alnum_and_stable_per_resource():
    pw = rehearsal.Passwords()
    a = pw("gateway-master-key", 48)
    assert len(a) == 48 and a.isalnum() and pw("gateway-master-key", 48) == a
    assert pw("gateway-salt-key", 48) != a


def test_records_depend_on_what_pulumi_would_wait_for(plans):
    plan, _, _ = plans
    deps = {r["name"]: set(r["dependsOn"]) for r in rehearsal.records_of(plan)}
    assert {"gateway-postgres", "gateway-redis", "network-local", "gateway-image"} <= deps["gateway"]
    assert "ollama" in deps["qwen3-0.6b"]  # vLLM starts after the engine sharing its GPU
    assert deps["ollama-pull-qwen2.5-0.5b"] == {"ollama"}
    assert {"network-local", "ollama-models", "ollama-image"} == deps["ollama"]
    # the pull scripts reach the container by the id the mocks gave it: its name
    [pull] = [r for r in plan.of_type(api.LOCAL_COMMAND) if r.name == "ollama-pull-qwen2.5-0.5b"]
    assert "docker -H unix:///var/run/docker.sock exec rehearsal-ollama ollama pull qwen2.5:0.5b" in pull.inputs["create"]


def test_records_expand_a_dependency_on_a_component():
    from config.plan import Plan, RecordedResource

    comp = RecordedResource("llmstack:index:OllamaServer", "ollama", {}, urn="u:comp")
    child = RecordedResource(api.CONTAINER, "ollama", {}, parent="u:comp", urn="u:ollama")
    vllm = RecordedResource(api.CONTAINER, "vllm", {}, depends_on=["u:comp"], urn="u:vllm")
    [_, _, rec] = rehearsal.records_of(Plan([comp, child, vllm], {}))
    assert rec["dependsOn"] == ["ollama"]


def test_stand_in_tags_are_the_programs_images(plans):
    plan, _, _ = plans
    tags = rehearsal.standin_tags(plan)
    assert set(tags) == {"ollama", "infinity", "speaches", "vllm", "litellm", "postgres", "redis",
                         "prometheus", "blackbox-exporter", "grafana", "dcgm-exporter", "caddy"}
    assert tags["caddy"] == ["caddy:2.11.4"]
    assert tags["prometheus"] == ["prom/prometheus:v3.13.2"] and tags["grafana"] == ["grafana/grafana:13.1.0"]
    assert tags["vllm"] == ["vllm/vllm-openai:v0.31.0"] and tags["infinity"] == ["michaelf34/infinity:0.0.77-cpu"]


def test_the_changed_model_diff(plans):
    _, _, passwords = plans
    port = 4000
    before = rehearsal.record_plan(rehearsal.stack_config(port), passwords, deployable=False)
    after = rehearsal.record_plan(rehearsal.stack_config(port, changed=True), passwords, deployable=False)
    assert {(c.action, c.type, c.name) for c in effective(diff_plans(before, after))} == rehearsal.EXPECTED_CHANGE


def _steps(*names: str) -> list[api.Step]:
    return [api.Step("command", {"name": n}, None) for n in names]


def test_dag_runs_independent_steps_together_and_dependents_after():
    deps = {"pg": set(), "redis": set(), "ollama": set(), "gateway": {"pg", "redis"}, "vllm": {"ollama"},
            "pull": {"ollama"}}
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    t0 = time.monotonic()

    def create(step: api.Step) -> None:
        name = step.record["name"]
        started[name] = time.monotonic() - t0
        time.sleep(0.2)
        finished[name] = time.monotonic() - t0

    api._run_dag(_steps(*deps), deps, create, 8, threading.Event())
    assert max(started[n] for n in ("pg", "redis", "ollama")) < 0.1
    assert started["gateway"] >= max(finished["pg"], finished["redis"])
    assert started["vllm"] >= finished["ollama"] and started["pull"] >= finished["ollama"]
    assert finished["gateway"] < 0.6  # two levels, not six steps in a row


def test_dag_stops_on_the_first_failure_and_reports_it_alone():
    stop = threading.Event()
    ran: list[str] = []

    def create(step: api.Step) -> None:
        name = step.record["name"]
        ran.append(name)
        if name == "bad":
            raise api.RehearsalError("bad: exited before it was healthy")
        stop.wait(5)  # a long healthy-wait, told to stop
        raise api.Aborted(f"{name}: stopped")

    with pytest.raises(api.RehearsalError, match="^bad: exited") as err:
        api._run_dag(_steps("bad", "slow", "after"), {"bad": set(), "slow": set(), "after": {"bad"}}, create, 4, stop)
    assert "slow" not in str(err.value) and "after" not in ran


def test_dag_reports_a_cycle():
    with pytest.raises(api.RehearsalError, match="cycle"):
        api._run_dag(_steps("a", "b"), {"a": {"b"}, "b": {"a"}}, lambda s: None, 2, threading.Event())


# --- on the engine -------------------------------------------------------------------------------

#: The whole rehearsal must stay under this (it runs in CI's `pytest`).
BUDGET_S = 300.0


@pytest.fixture(scope="module")
def report(engine):  # noqa: F811
    return rehearsal.rehearse(engine)  # prints its log and summary (pytest -s, or on failure)


@rehearsal_mark
def test_every_container_healthy_through_its_own_healthcheck(report):
    assert set(report.healthy) == {"ollama", "infinity", "speaches", "qwen3-0.6b", "gateway-postgres",
                                   "gateway-redis", "gateway", "gateway-2", "prometheus", "prometheus-blackbox", "grafana",
                                   "gpu-exporter-local", "edge"}
    # dcgm-exporter's distroless image cannot probe itself: Prometheus' `up` watches it (see below)
    assert report.healthy.pop("gpu-exporter-local") == "none"
    assert all(status == "healthy" for status in report.healthy.values()), report.healthy
    assert all(report.healthchecks_match.values()), report.healthchecks_match


@rehearsal_mark
def test_start_order_follows_the_plan(report):
    created, healthy = {n: a for n, (a, _) in report.health.items()}, {n: b for n, (_, b) in report.health.items()}
    # the gateway after healthy Postgres and Redis; vLLM after the engine sharing its GPU
    assert {"gateway-postgres", "gateway-redis"} <= set(report.depends_on["gateway"])
    assert created["gateway"] >= max(healthy["gateway-postgres"], healthy["gateway-redis"])
    assert "ollama" in report.depends_on["qwen3-0.6b"]
    assert created["qwen3-0.6b"] >= healthy["ollama"]
    # model pulls after their server is healthy
    for pull, done in report.pulls.items():
        server = pull.split("-pull-")[0]
        assert report.depends_on[pull] == [server] and done >= healthy[server], (pull, report.depends_on[pull])
    # independent resources in parallel: the first containers all start together
    assert max(created[n] for n in ("ollama", "infinity", "speaches", "gateway-postgres", "gateway-redis")) < 5


@rehearsal_mark
def test_wiring_ports_and_keys(report):
    # the edge alone publishes (HTTPS on loopback); the gateway, Prometheus and Grafana publish nothing
    assert {n: p for n, p in report.published.items() if p} == {"edge": [f"127.0.0.1:{report.port}->{report.port}/tcp"]}
    # each backend refuses a call without the key that the gateway got through its env
    assert set(report.without_key) == {"vllm", "infinity", "speaches", "redis"}
    assert all(report.without_key[b] in ("401", "403") for b in ("vllm", "infinity", "speaches")), report.without_key
    assert "NOAUTH" in report.without_key["redis"]
    # ... and the gateway's own Redis connections got past AUTH (its router uses Redis)
    assert report.gateway_redis_commands and set(report.gateway_redis_commands) - {"auth"}, report.gateway_redis_commands
    assert report.ollama_models_after_up == ["qwen2.5:0.5b"]


@rehearsal_mark
def test_smoke_check_green_through_the_edge_before_and_after_the_change(report):
    # HTTPS with the stack CA's certificate (pulumi-tls's resources made real): trusted with the caCertificate
    # output, refused by a client that trusts only the system's CAs
    assert report.gateway_url == f"https://{rehearsal.EDGE_DOMAIN}:{report.port}"
    assert report.ca_subject == "O=llmstack,CN=llmstack CA"
    assert "CERTIFICATE_VERIFY_FAILED" in report.without_ca, report.without_ca
    assert [code for code, _ in report.smoke] == [0, 0]
    for _, table in report.smoke:
        assert f"smoke: 7 of 7 calls ok against {report.gateway_url}" in table
        for route in ("/v1/chat/completions+tools", "/v1/embeddings", "/rerank", "/v1/audio/transcriptions",
                      "/v1/audio/speech"):
            assert route in table


@rehearsal_mark
def test_every_client_call_reached_the_gateway_through_the_edge(report):
    edge, other = report.edge_served["edge"], report.edge_served["other"]
    # the second smoke run's calls, each from the edge's address (LiteLLM's access log)
    for call in ("POST /v1/chat/completions 200", "POST /v1/embeddings 200", "POST /rerank 200",
                 "POST /v1/audio/transcriptions 200", "POST /v1/audio/speech 200"):
        assert edge.get(call, 0) >= 1, edge
    assert edge.get("POST /v1/chat/completions 200") >= 3  # two chat models, one with tools
    assert edge.get("GET /health/readiness 200", 0) >= 1   # the edge's active health check
    # nothing else called the gateway's API (Prometheus scrapes its separate metrics listener)
    assert other == {}, other


@rehearsal_mark
def test_changed_model_replaces_only_the_gateway(report):
    assert {(c.action, c.type, c.name) for c in report.changes} == rehearsal.EXPECTED_CHANGE
    assert report.replaced_containers == {"gateway", "gateway-2"}
    # on the engine: every other container is the very same one
    assert report.untouched_ids == {n: n not in ("gateway", "gateway-2") for n in report.untouched_ids}


@rehearsal_mark
def test_clients_kept_calling_through_the_edge_while_the_gateway_rolled(report, capsys):
    loop = report.change_loop
    with capsys.disabled():  # the benchmark's figures (issue 15, 5b), in CI's output too
        print("\n[benchmark] " + loop.summary())
    # The loop ran through the whole change, streamed and not; its failures and stalls are figures, not asserts.
    assert len(loop.calls) >= 10 and {c.streamed for c in loop.calls} == {True, False}


@rehearsal_mark
def test_prometheus_sees_every_target_the_gateways_counters_and_a_stopped_engine(report):
    # every job of the generated config up, through the real Prometheus' own view (blackbox's probes included)
    assert report.targets == {job: "up" for job in (
        "dcgm/local/gpus/0", "infinity/local/infinity/0", "litellm/local/gateway/1", "litellm/local/gateway/2",
        "ollama/local/ollama/0",
        "speaches/local/speaches/0", "vllm/local/qwen3-0.6b/0")}
    assert report.probes == {"ollama": "1", "speaches": "1"}  # Speaches' /health with its key from the secret file
    # LiteLLM's request counter for every model the smoke check called, and one healthy state per deployment
    assert set(report.gateway_requests) == set(report.gateway_models) and min(report.gateway_requests.values()) >= 1
    assert len(report.deployment_states) == len(report.gateway_models)
    assert set(report.deployment_states.values()) == {"0"}, report.deployment_states
    assert report.gpu_memory_used == {"local/0": "4096"}
    assert report.rules_health and set(report.rules_health.values()) == {"ok"}, report.rules_health
    # the stopped engine's alert rule goes pending (it fires only after `targetDownFor`)
    assert report.stopped_engine_alerts == [("TargetDown", "pending", rehearsal.STOPPED_ENGINE)]
    # Grafana (a stand-in) got the generated provisioning, and the password of the stack output opens it
    assert report.grafana_dashboards == ["llmstack: GPUs", "llmstack: gateway overview", "llmstack: models"]
    assert report.grafana_datasource == "http://prometheus:9090"


@rehearsal_mark
def test_destroy_keeps_the_retained_volumes_with_their_data(report):
    assert report.volumes_after_destroy == report.expected_retained_volumes
    assert set(report.expected_retained_volumes) == {
        f"rehearsal-{name}"
        for name in ("ollama-models", "infinity-cache", "speaches-hf-hub", "qwen3-0.6b-hf-cache", "litellm-postgres-data", "litellm-redis-data",
                     "prometheus-data", "grafana-data", "edge-data", "edge-config")
    }
    assert sorted(r.split(" ", 1)[1] for r in report.retained) == report.expected_retained_volumes
    assert report.objects_after_destroy == []
    # the pulled model (the changed tag; the dropped one was removed by its pull's delete) stays
    assert report.ollama_models_after_destroy == [rehearsal.CHANGED_OLLAMA[1]]
    assert report.postgres_data_after_destroy


@rehearsal_mark
def test_machine_left_clean_and_in_time(report):
    assert report.left_after_cleanup == []
    assert report.seconds < BUDGET_S, report.summary()


@rehearsal_mark
def test_a_rejected_engine_flag_fails_readably_and_leaves_nothing(engine):  # noqa: F811
    def break_vllm(raw):
        raw["ollama"].pop("gpus")  # vLLM starts at once instead of after Ollama: a quick failure
        raw["vllm"][0]["extraArgs"] = ["--definitely-not-a-vllm-flag"]

    t0 = time.monotonic()
    with pytest.raises(api.RehearsalError) as err:
        rehearsal.rehearse(engine, log=lambda _: None, edit=break_vllm)
    text = str(err.value)
    assert "qwen3-0.6b" in text and "exited before it was healthy" in text, text
    assert "--definitely-not-a-vllm-flag" in text and "--- logs" in text, text  # the stand-in's own error
    assert time.monotonic() - t0 < 30
    label = api.REHEARSAL_LABEL
    assert api.leftover_volumes(engine) == [] and engine.list_containers(label) == [] and engine.list_networks(label) == []
