"""The two-host rehearsal (issue 14): the REAL program under Pulumi's mocks for Pulumi.rehearsal-hosts.yaml, each
resource created for real on the engine of its host: host a on engine A, host b on engine B (dockerd.sh b).

    up        both engines at once, over the plan's dependency graph (docker_api routes each record by provider)
    smoke     config.smoke against the gateway on A: the chat model (replicas on A and B) and the embedding
              model (only on B, through B's relay: https with the stack CA's certificate, the engine's key)
    replicas  chat requests through the gateway: the stand-ins' own request logs show both replicas served
    relay     from the gateway's container: B's relay refuses calls without the engine's key, /metrics and
              /invocations even with it; B's engines answer nothing else from A (not even by container address)
    failover  a client loop of FAILOVER_REQUESTS chat requests while B's chat replica is stopped: how many
              failed, and how long until none failed (printed as a benchmark)
    change    the embedding model on B changed: the plan diff touches B and, on A, only the gateway; applied, every
              other container on A keeps its id; smoke again
    destroy   like `pulumi destroy` on both engines, then cleanup of both

Run it alone with `python -m tests.rehearsal.two_hosts`; `pytest -m rehearsal` runs it through test_two_hosts.py.
"""

from __future__ import annotations

import copy
import json
import secrets
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx
import yaml

if __package__ in (None, ""):  # `python tests/rehearsal/two_hosts.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "tests.rehearsal"

from config.plan import Plan, reveal
from config.plan_diff import REPLACE, Change, diff_plans, effective
from config.source import from_stack_file

from . import docker_api as api
from . import rehearsal as single
from . import standin_images as si
from .client_loop import Call, LoopFigures, chat, completions_url
from .rehearsal import IGNORED_TYPES, Log, Passwords, containers, gateway_container, records_of
from .tls_provider import TLSProvider

STACK_FILE = Path(__file__).with_name("Pulumi.rehearsal-hosts.yaml")
STACK = "rehearsal"
#: Engine B's address on this machine (dockerd.sh b's bridge): where host b publishes its relay.
B_ADDRESS = "10.214.0.1"
CHAT_MODEL = "chat"
EMBEDDING_MODEL = "bge-small"
#: The ONE change on host b: another embedding model for the same client name.
CHANGED_EMBEDDING = "BAAI/bge-base-en-v1.5"
#: Chat requests sent before the failover, so that each replica serves some (LiteLLM picks per request).
WARMUP_REQUESTS = 24
#: The failover benchmark's client loop: requests in all, how many at once, and after how many B's replica stops.
FAILOVER_REQUESTS = 240
FAILOVER_CLIENTS = 4
STOP_AFTER = 40
REQUEST_TIMEOUT_S = 30.0


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def stack_config(port: int, relay_port: int, *, changed: bool = False) -> dict[str, Any]:
    """The two-host stack's raw config: the gateway on `port`, B's relay on `relay_port`; `changed`: the
    embedding model on B is CHANGED_EMBEDDING."""
    raw = copy.deepcopy(from_stack_file(STACK_FILE))
    raw["gateway"]["port"] = port
    raw["hosts"]["b"]["relayPort"] = relay_port
    if changed:
        [entry] = [m for m in raw["infinity"]["models"] if m["name"] == EMBEDDING_MODEL]
        entry["model"] = CHANGED_EMBEDDING
    return raw


def record_plan(raw: dict[str, Any], passwords: Passwords, tls: Optional[TLSProvider] = None,
                deployable: bool = True) -> Plan:
    from config.plan import run_program

    extra: dict[str, Any] = {"tls": tls} if tls is not None else {}
    if deployable:
        extra["resource_id"] = single.resource_id
    return run_program(raw, stack=STACK, password=passwords, **extra)


def providers(plan: Plan) -> dict[str, str]:
    """Container resource name -> its Docker provider (`host-a`, `host-b`)."""
    return {r.name: r.provider for r in plan.of_type(api.CONTAINER)}


def standin_tags_on(plan: Plan, provider: str) -> dict[str, list[str]]:
    """The stand-in images the containers of one host need (kind -> tags)."""
    tags = {r.outputs["imageId"]: r.inputs["name"] for r in plan.of_type(api.REMOTE_IMAGE)}
    kinds: dict[str, list[str]] = {}
    for r in plan.of_type(api.CONTAINER):
        if r.provider != provider:
            continue
        inputs = reveal(r.inputs)
        kind = single._labels(inputs)["llmstack.component"]
        tag = tags[inputs["image"]]
        if tag not in kinds.setdefault(kind, []):
            kinds[kind].append(tag)
    return kinds


def gateway_deployments(plan: Plan) -> list[dict[str, Any]]:
    """The model_list of the gateway's uploaded LiteLLM config."""
    [gateway] = [r for r in plan.of_type(api.CONTAINER) if single._labels(reveal(r.inputs))["llmstack.component"] == "litellm"]
    [upload] = [u for u in reveal(gateway.inputs["uploads"]) if u["file"] == "/app/config.yaml"]
    return yaml.safe_load(upload["content"])["model_list"]


def gateway_settings(plan: Plan) -> dict[str, Any]:
    [gateway] = [r for r in plan.of_type(api.CONTAINER) if single._labels(reveal(r.inputs))["llmstack.component"] == "litellm"]
    [upload] = [u for u in reveal(gateway.inputs["uploads"]) if u["file"] == "/app/config.yaml"]
    config = yaml.safe_load(upload["content"])
    return {"router_settings": config.get("router_settings") or {}, "general_settings": config.get("general_settings") or {}}


def env_of(plan: Plan, container: str) -> dict[str, str]:
    envs = containers(plan)[container].get("envs") or []
    return dict(e.split("=", 1) for e in envs)


# ---------------------------------------------------------------------------------------------
# What the run saw


@dataclass
class Failover(LoopFigures):
    """The failover loop's calls (none streamed), and when B's replica was stopped."""

    stopped_at: float = 0.0                                 # seconds after the loop began
    detection_interval: float = 0.0                         # the gateway's health_check_interval (0: none)

    def failed_after(self, seconds: float) -> list[Call]:
        return [c for c in self.failed if c.started >= self.stopped_at + seconds]

    @property
    def time_to_recover(self) -> float:
        """From the stop to the end of the last failed call (0 when none failed)."""
        return max((c.ended - self.stopped_at for c in self.failed), default=0.0)

    def summary(self) -> str:
        before = [c.ended - c.started for c in self.calls if c.started < self.stopped_at]
        after = [c.ended - c.started for c in self.calls if c.started >= self.stopped_at]
        worst = max(after, default=0.0)
        errors = sorted({c.detail for c in self.failed})
        return (f"failover: {len(self.calls)} chat requests, {FAILOVER_CLIENTS} clients; B's replica stopped at "
                f"{self.stopped_at:.1f}s: {len(self.failed)} failed ({len(self.failed_after(self.detection_interval))} "
                f"after the first detection interval of {self.detection_interval:g}s), time to recover "
                f"{self.time_to_recover:.2f}s; latency median before {statistics.median(before) if before else 0:.3f}s, "
                f"after {statistics.median(after) if after else 0:.3f}s, worst after {worst:.2f}s"
                + (f"; failed at {', '.join(f'+{c.started - self.stopped_at:.1f}s' for c in self.failed)} after the stop"
                   if self.failed else "")
                + (f"; errors: {errors[:2]}" if errors else ""))


@dataclass
class HostsReport:
    run_label: str
    port: int
    relay_port: int
    gateway: str = ""                                                # the gateway container's resource name
    started: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)
    placement: dict[str, str] = field(default_factory=dict)          # container resource -> provider
    healthy: dict[str, str] = field(default_factory=dict)            # container resource -> docker health
    published: dict[str, list[str]] = field(default_factory=dict)    # container resource -> its published ports
    api_bases: dict[str, list[str]] = field(default_factory=dict)    # model name -> api_base of each deployment
    smoke: list[tuple[int, str]] = field(default_factory=list)
    replica_requests: dict[str, int] = field(default_factory=dict)   # chat replica container -> chat requests it logged
    relay: dict[str, str] = field(default_factory=dict)              # call through B's relay -> HTTP status
    direct_to_b: str = ""                                            # A's gateway calling B's engine by its address
    failover: Failover = field(default_factory=Failover)
    changes: list[Change] = field(default_factory=list)
    untouched_on_a: dict[str, bool] = field(default_factory=dict)    # container on A -> same docker id after the change
    retained: list[str] = field(default_factory=list)
    volumes_after_destroy: list[tuple[str, str]] = field(default_factory=list)  # (engine socket, volume)
    expected_retained_volumes: list[str] = field(default_factory=list)
    left_after_cleanup: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"two-host rehearsal {self.run_label}: {self.seconds:.1f}s in all (gateway on 127.0.0.1:{self.port}, "
                 f"B's relay on {B_ADDRESS}:{self.relay_port})"]
        lines += [f"  {phase:<10} {s:6.1f}s" for phase, s in self.phases.items()]
        lines.append(f"  placement: {self.placement}")
        lines.append(f"  api_base per model: {self.api_bases}")
        lines.append(f"  published: { {n: p for n, p in self.published.items() if p} }")
        lines.append(f"  chat requests per replica (stand-ins' logs): {self.replica_requests}")
        lines.append(f"  through B's relay: {self.relay}; B's engine by its address from A: {self.direct_to_b}")
        lines.append("  " + self.failover.summary())
        lines.append("  changed model on B -> " + ", ".join(f"{c.action} {c.name}" for c in self.changes))
        lines.append(f"  containers on A untouched by it: {self.untouched_on_a}")
        lines.append(f"  after destroy: {self.volumes_after_destroy}")
        return "\n".join(lines)


def _phase(report: HostsReport, name: str, t0: float) -> None:
    report.phases[name] = time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# Checks


def curl_in(engine: api.Engine, container: str, *args: str, bearer_env: str = "", timeout: float = 30) -> str:
    """`curl -s -o /dev/null -w %{http_code} ARGS` run in a container (the host's curl): the HTTP status, or
    `000` with curl's exit code when nothing answered. bearer_env: send the key in this env of the container
    (as the gateway does: its config says `os.environ/NAME`), so no key is on a command line."""
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"]
    if bearer_env:
        argv = ["sh", "-c", f'exec {" ".join(curl)} -H "Authorization: Bearer ${bearer_env}" "$@"', "curl", *args]
    else:
        argv = [*curl, *args]
    code, out = engine.exec(container, argv, timeout=timeout)
    return out.strip() if code == 0 else f"{out.strip() or '000'} (curl exit {code})"


def replica_requests(engines: dict[str, api.Engine], plan: Plan) -> dict[str, int]:
    """Chat requests each vLLM replica logged (the stand-in's own request log, read inside its container)."""
    counts = {}
    for res, inputs in containers(plan).items():
        if single._labels(inputs)["llmstack.component"] != "vllm":
            continue
        engine = engines[providers(plan)[res]]
        code, out = engine.exec(inputs["name"], ["curl", "-sf", "http://127.0.0.1:8000/__stub__/requests"], timeout=30)
        if code != 0:
            raise api.RehearsalError(f"{res}: its request log did not answer: {out[-300:]}")
        counts[res] = sum(1 for r in json.loads(out) if r.get("method") == "POST" and r.get("path") == "/v1/chat/completions")
    return counts


def probe_relay(engines: dict[str, api.Engine], plan: Plan, report: HostsReport) -> None:
    """From the gateway's container on A, as the gateway calls: B's relay over https with the stack CA."""
    gateway = gateway_container(plan)
    a = engines[providers(plan)[gateway_resource(plan)]]
    deployments = gateway_deployments(plan)
    remote = [d["litellm_params"] for d in deployments if B_ADDRESS in str(d["litellm_params"].get("api_base", ""))]
    if not remote:
        raise api.RehearsalError(f"no deployment of the gateway goes through B's relay ({B_ADDRESS}): {deployments}")
    chat = next(p for p in remote if p["model"].startswith("hosted_vllm/"))
    other = next(p for p in remote if p is not chat)  # another engine behind the same relay: its key is not this one's
    base, key_env = chat["api_base"], chat["api_key"].removeprefix("os.environ/")
    root = base.rsplit("/v1", 1)[0]                       # https://10.214.0.1:<port>/<alias>
    ca = ["--cacert", env_of(plan, gateway_resource(plan))["SSL_CERT_FILE"]]
    invocation = ["-H", "Content-Type: application/json", "-d",
                  json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]})]
    report.relay = {
        "GET /v1/models with the engine's key": curl_in(a, gateway, *ca, f"{base}/models", bearer_env=key_env),
        "GET /v1/models without a key": curl_in(a, gateway, *ca, f"{base}/models"),
        "GET /v1/models with another engine's key": curl_in(a, gateway, *ca, f"{base}/models",
                                                            bearer_env=other["api_key"].removeprefix("os.environ/")),
        "GET /metrics with the engine's key": curl_in(a, gateway, *ca, f"{root}/metrics", bearer_env=key_env),
        "POST /invocations with the engine's key": curl_in(a, gateway, *ca, *invocation, f"{root}/invocations", bearer_env=key_env),
        "POST /invocations without a key": curl_in(a, gateway, *ca, *invocation, f"{root}/invocations"),
        "GET /v1/models trusting only the system CAs": curl_in(a, gateway, "--cacert", "/etc/ssl/certs/ca-certificates.crt",
                                                                f"{base}/models", bearer_env=key_env),
    }
    # the same /invocations, inside B, straight to the engine: it answers without a key (why it must not be reachable)
    b_chat_name = containers(plan)[next(res for res, p in providers(plan).items() if p == "host-b"
                                        and single._labels(containers(plan)[res])["llmstack.component"] == "vllm")]["name"]
    report.relay["POST /invocations without a key, inside B"] = curl_in(
        engines["host-b"], b_chat_name, *invocation, "http://127.0.0.1:8000/invocations")
    # B's chat replica by its own address on B's network, from A: nothing answers (only the relay's port is reachable)
    b_chat = next(res for res, p in providers(plan).items() if p == "host-b"
                  and single._labels(containers(plan)[res])["llmstack.component"] == "vllm")
    info = engines["host-b"].inspect_container(containers(plan)[b_chat]["name"]) or {}
    ips = [n["IPAddress"] for n in ((info.get("NetworkSettings") or {}).get("Networks") or {}).values()]
    report.direct_to_b = curl_in(a, gateway, "--max-time", "3", f"http://{ips[0]}:8000/metrics", timeout=15)


def gateway_resource(plan: Plan) -> str:
    return next(res for res, inputs in containers(plan).items() if single._labels(inputs)["llmstack.component"] == "litellm")


def run_failover(call: Callable[[], tuple[bool, str]], stop: Callable[[], None], detection_interval: float, *,
                 requests: int = FAILOVER_REQUESTS, clients: int = FAILOVER_CLIENTS, stop_after: int = STOP_AFTER) -> Failover:
    """`requests` calls (`call()` -> (ok, error)) from `clients` threads; `stop` (B's replica) runs once `stop_after`
    of them are done, while the others go on."""
    result = Failover(detection_interval=detection_interval)
    lock = threading.Lock()
    issued = iter(range(requests))
    t0 = time.monotonic()
    stopped = threading.Event()

    def client() -> None:
        while True:
            with lock:
                if next(issued, None) is None:
                    return
            start = time.monotonic() - t0
            ok, error = call()
            with lock:
                result.calls.append(Call(start, time.monotonic() - t0, False, ok, error))
                fire = len(result.calls) == stop_after
            if fire:
                result.stopped_at = time.monotonic() - t0
                stop()
                stopped.set()

    threads = [threading.Thread(target=client, name=f"failover-client-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not stopped.is_set():
        raise api.RehearsalError("the failover loop ended before B's replica was stopped")
    result.calls.sort(key=lambda c: c.started)
    result.duration = time.monotonic() - t0
    return result


# ---------------------------------------------------------------------------------------------
# The run


def rehearse(log: Log = print) -> HostsReport:
    """The two-host rehearsal; always removes what it created on both engines before it returns or raises."""
    every_engine = {"a": api.ensure_engine(api.Engine(single.ENGINE_SOCKETS[0])),
                    "b": api.ensure_engine(api.Engine(api.ENGINE_B_SOCKET))}
    report = HostsReport(run_label=f"rehearsal-{secrets.token_hex(4)}", port=free_port(), relay_port=free_port(B_ADDRESS))
    passwords, tls = Passwords(), TLSProvider()
    plan = record_plan(stack_config(report.port, report.relay_port), passwords, tls)
    changed = record_plan(stack_config(report.port, report.relay_port, changed=True), passwords, tls)
    records = records_of(plan)
    engines = single.engines_of(records)
    a = engines["host-a"]
    images = {**api.image_map(records), **api.image_map(records_of(changed))}
    overrides = {gateway_container(plan): single.GATEWAY_ENV_OVERRIDE}
    binds = si.rehearsal_binds()
    api.plan(records, images=images, binds=binds, env_overrides=overrides, ignore_types=IGNORED_TYPES)
    report.placement = providers(plan)
    report.gateway = gateway_resource(plan)
    report.api_bases = {}
    for d in gateway_deployments(plan):
        report.api_bases.setdefault(d["model_name"], []).append(str(d["litellm_params"].get("api_base")))
    _phase(report, "plan", report.started)

    t0 = time.monotonic()
    api.cleanup(a, log=log, engines=every_engine)
    for provider, engine in engines.items():
        si.build_standin_images(standin_tags_on(plan, provider), engine=engine, log=log)
    _phase(report, "images", t0)
    try:
        _run(engines, plan, changed, records, images, binds, overrides, passwords, report, log)
    finally:
        single.teardown(a, changed, single.Report(run_label=report.run_label, port=report.port), log, every_engine)
        label = f"{api.REHEARSAL_LABEL}={report.run_label}"
        report.left_after_cleanup = [f"{e.socket_path}: volume {v['Name']}" for e in every_engine.values() for v in e.list_volumes(label)]
        report.left_after_cleanup += [f"{e.socket_path}: container {c['Names'][0]}" for e in every_engine.values()
                                      for c in e.list_containers(label)]
        report.seconds = time.monotonic() - report.started
    log(report.summary())
    return report


def _run(engines: dict[str, api.Engine], plan: Plan, changed: Plan, records: list[dict[str, Any]], images: dict[str, str],
         binds: list[str], overrides: dict[str, dict[str, Optional[str]]], passwords: Passwords, report: HostsReport,
         log: Log) -> None:
    a = engines["host-a"]
    t0 = time.monotonic()
    api.up(records, images=images, binds=binds, env_overrides=overrides, run_label=report.run_label, engine=a,
           ignore_types=IGNORED_TYPES, concurrency=single.CONCURRENCY, wait_cap=single.WAIT_CAP_S, log=log, engines=engines)
    _phase(report, "up", t0)
    where = providers(plan)
    for res, inputs in containers(plan).items():
        info = engines[where[res]].inspect_container(inputs["name"]) or {}
        report.healthy[res] = ((info.get("State") or {}).get("Health") or {}).get("Status", "none")
        ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
        report.published[res] = sorted(f"{b['HostIp']}:{b['HostPort']}->{p}" for p, bs in ports.items() for b in bs or [])

    t0 = time.monotonic()
    report.smoke.append(single.run_smoke(plan, None, a, log))
    outputs = reveal(plan.outputs)
    chat_url, headers = completions_url(outputs["gatewayUrl"]), {"Authorization": f"Bearer {outputs['masterKey']}"}

    def chat_once() -> tuple[bool, str]:
        # A connection per request, as a client that does not keep connections alive.
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            return chat(client, chat_url, headers, CHAT_MODEL, stream=False)

    for _ in range(WARMUP_REQUESTS):
        ok, error = chat_once()
        if not ok:
            raise api.RehearsalError(f"a chat request before the failover failed: {error}")
    report.replica_requests = replica_requests(engines, plan)
    probe_relay(engines, plan, report)
    _phase(report, "checks", t0)

    t0 = time.monotonic()
    b_chat = next(res for res, p in where.items() if p == "host-b"
                  and single._labels(containers(plan)[res])["llmstack.component"] == "vllm")
    b_name = containers(plan)[b_chat]["name"]
    interval = gateway_settings(plan)["general_settings"].get("health_check_interval") or 0
    report.failover = run_failover(chat_once, lambda: engines["host-b"].request(
        "POST", f"/containers/{b_name}/stop", params={"t": 2}, timeout=30), float(interval))
    log("[rehearsal] " + report.failover.summary())
    engines["host-b"].request("POST", f"/containers/{b_name}/start")  # back, for the change below
    _phase(report, "failover", t0)

    t0 = time.monotonic()
    report.changes = effective(diff_plans(
        record_plan(stack_config(report.port, report.relay_port), passwords, deployable=False),
        record_plan(stack_config(report.port, report.relay_port, changed=True), passwords, deployable=False)))
    log(f"[rehearsal] embedding model on B -> {CHANGED_EMBEDDING}: plan diff")
    for change in report.changes:
        log(f"  {change}")
    on_a = {res: inputs["name"] for res, inputs in containers(plan).items() if where[res] == "host-a"}
    ids_before = {res: (a.inspect_container(name) or {}).get("Id") for res, name in on_a.items()}
    single.apply_change(a, plan, changed, report.changes, images=images, run_label=report.run_label, log=log, engines=engines)
    report.untouched_on_a = {res: (a.inspect_container(name) or {}).get("Id") == ids_before[res] for res, name in on_a.items()}
    report.smoke.append(single.run_smoke(changed, None, a, log))
    _phase(report, "change", t0)

    t0 = time.monotonic()
    destroyed = api.destroy(records_of(changed), engine=a, run_label=report.run_label, run_commands=False,
                            ignore_types=IGNORED_TYPES, log=log, engines=engines)
    _phase(report, "destroy", t0)
    report.retained = destroyed.retained
    report.expected_retained_volumes = sorted(str(reveal(r.inputs["name"])) for r in changed.of_type(api.VOLUME) if r.retain_on_delete)
    report.volumes_after_destroy = sorted((v["engine"], v["name"]) for v in api.leftover_volumes(
        a, run_label=report.run_label, engines=engines))


def main() -> int:
    try:
        report = rehearse()
    except api.RehearsalError as e:
        print(f"two-host rehearsal FAILED:\n{e}", file=sys.stderr)
        return 1
    return 0 if not report.left_after_cleanup else 1


if __name__ == "__main__":
    sys.exit(main())
