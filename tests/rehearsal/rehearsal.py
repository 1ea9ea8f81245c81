"""The rehearsal: the REAL program, run under Pulumi's mocks for the rehearsal stack
(tests/rehearsal/Pulumi.rehearsal.yaml), its docker resources created for real on the local engine.

    up       every resource the program registers, created through docker_api (the one mapping of
             pulumi-docker inputs) concurrently over the plan's dependency graph, like `pulumi up`;
             containers wait for healthy through their own healthchecks; the model pulls are the
             recorded pulumi-command `create` scripts, run with /bin/sh against the stack's Docker host
    smoke    config.smoke through the edge (Caddy, `tls: internal`: the only published port), trusting
             the stack CA of the plan's outputs, with the master key and the model lists of the
             plan's outputs: every route must answer
    change   the stack again with ONE changed model: config.plan_diff says which resources change;
             those changes are applied (replaced containers recreated, new pulls run, dropped pulls
             deleted) and the smoke check runs again
    destroy  like `pulumi destroy`: the retained volumes (model stores, databases) stay, with data
    cleanup  everything the run created is removed, retained volumes included

Run it alone with `python -m tests.rehearsal.rehearsal`; `pytest -m rehearsal` runs it through
test_rehearsal.py, which asserts on the returned `Report`.
"""

from __future__ import annotations

import copy
import io
import json
import re
import secrets
import socket
import ssl
import string
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

if __package__ in (None, ""):  # `python tests/rehearsal/rehearsal.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "tests.rehearsal"

from config import smoke
from config.plan import Plan, run_program, reveal
from config.plan_diff import CREATE, DELETE, REPLACE, UPDATE, Change, diff_plans, effective
from config.source import from_stack_file

from . import docker_api as api
from . import standin_images as si
from .client_loop import ClientLoop, LoopFigures
from .tls_provider import TLSProvider

Log = Callable[[str], None]

STACK_FILE = Path(__file__).with_name("Pulumi.rehearsal.yaml")
STACK = "rehearsal"
#: The Docker host of the rehearsal stack: the engine docker_api talks to must be this one, since
#: the pull scripts run `docker -H <it> exec ...`.
DOCKER_HOST = "unix:///var/run/docker.sock"
#: The rehearsal's Docker engines (tests/rehearsal/dockerd.sh, `dockerd.sh b`): a stack's hosts must be on these.
#: Both are started, and both cleaned of leftovers, whatever the stack uses.
ENGINE_SOCKETS = (DOCKER_HOST[len("unix://"):], api.ENGINE_B_SOCKET)
#: The name the edge's certificate carries: the gateway host's address, which is `localhost` for a host reached
#: over a local unix socket (the edge's default domain); the smoke check calls https://localhost:<port>.
EDGE_DOMAIN = "localhost"
#: Types that create nothing on a Docker host: the program's components, providers, random values, and
#: pulumi-tls's keys and certificates (state only; tls_provider.py made them real in the plan's inputs).
IGNORED_TYPES = (*api.DEFAULT_IGNORED_TYPE_PREFIXES, "llmstack:", "tls:")
COMPONENT_PREFIX = "llmstack:"
#: The one rehearsal change to a container's env. With DATABASE_URL set, LiteLLM runs Prisma at
#: start (client generation and migrations), and Prisma downloads its query-engine binaries from
#: binaries.prisma.sh: these machines cannot reach it, so the proxy would exit. Without it the proxy
#: serves every route from its config file; Postgres still runs, healthy, and the gateway still
#: starts after it (the dependency comes from the plan, not from this env).
GATEWAY_ENV_OVERRIDE = {"DATABASE_URL": None}
#: The ONE changed model of the second `up`: a different Ollama tag for the same client model name.
#: Expected: the gateway container is replaced (its config file names the tag), the new tag is
#: pulled, the old pull is deleted (`ollama rm`); the Ollama container itself stays.
CHANGED_OLLAMA = ("qwen2.5-small", "qwen2.5:0.5b-instruct-q4_K_M")
EXPECTED_CHANGE = {
    (REPLACE, api.CONTAINER, "gateway"),
    # behind the edge, the gateway's Docker name carries a generation id that follows its config: a new name, so
    # the new container is created (and healthy) before the old one goes
    (REPLACE, "random:index/randomId:RandomId", "gateway-generation"),
    (REPLACE, api.CONTAINER, "gateway-2"),
    (REPLACE, "random:index/randomId:RandomId", "gateway-2-generation"),
    (CREATE, api.LOCAL_COMMAND, "ollama-pull-qwen2.5-0.5b-instruct-q4_K_M"),
    (DELETE, api.LOCAL_COMMAND, "ollama-pull-qwen2.5-0.5b"),
}
#: `pulumi up` runs independent resource operations in parallel; so does the rehearsal.
CONCURRENCY = 16
#: Longest wait for one container to be healthy (the program's waitTimeouts run up to an hour for
#: vLLM; three 30 s intervals and a margin are plenty for a stand-in).
WAIT_CAP_S = 150.0
SMOKE_TIMEOUT_S = 60.0


# ---------------------------------------------------------------------------------------------
# The plan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_config(port: int, *, changed: bool = False, edit: Optional[Callable[[dict[str, Any]], None]] = None) -> dict[str, Any]:
    """The rehearsal stack's raw config, the edge's HTTPS on `port`; `changed`: with CHANGED_OLLAMA applied;
    `edit`: a change of the caller's (a test breaking the stack on purpose)."""
    raw = copy.deepcopy(from_stack_file(STACK_FILE))
    raw["edge"]["httpsPort"] = port
    if edit is not None:
        edit(raw)
    if changed:
        name, tag = CHANGED_OLLAMA
        [entry] = [m for m in raw["ollama"]["models"] if m["name"] == name]
        entry["model"] = tag
    return raw


class Passwords:
    """Random passwords, one per resource name for the whole run, as Pulumi keeps them in state."""

    ALPHABET = string.ascii_letters + string.digits

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def __call__(self, name: str, length: int) -> str:
        if name not in self.values:
            self.values[name] = "".join(secrets.choice(self.ALPHABET) for _ in range(length))
        return self.values[name][:length]


def resource_id(type_: str, name: str, inputs: dict[str, Any]) -> str:
    """A Container's id is its `name` (Docker accepts a name wherever an id goes, so the pull
    scripts' `docker exec <container id>` reach it); anything else gets the mocks' usual id."""
    if type_ == api.CONTAINER:
        return str(reveal(inputs["name"]))
    return f"{name}-id"


def record_plan(raw: dict[str, Any], passwords: Passwords, *, deployable: bool = True,
                tls: Optional[TLSProvider] = None) -> Plan:
    """The program's plan for this config: run_program under Pulumi's mocks.

    tls: real keys and certificates for the pulumi-tls resources (one per resource for the run); without
    it, the mocks' PEM-shaped markers.
    deployable: containers' ids are their names (see resource_id). Otherwise the mocks' own ids
    (`<resource>-id`), for config.plan_diff: it follows a replaced resource's id into the inputs
    that mention it as a word, which is sound for distinctive ids (Docker's 64 hex digits, the
    mocks' `-id` suffix) but not for a bare name like `litellm`, which also stands as a word in
    the gateway's DATABASE_URL (`postgresql://litellm:...`)."""
    extra: dict[str, Any] = {"tls": tls} if tls is not None else {}
    if deployable:
        return run_program(raw, stack=STACK, password=passwords, resource_id=resource_id, **extra)
    return run_program(raw, stack=STACK, password=passwords, **extra)


def records_of(plan: Plan) -> list[dict[str, Any]]:
    """The plan as docker_api records, with `dependsOn` as resource names: a dependency on a component
    is one on every resource under it (as in Pulumi)."""
    by_urn = {r.urn: r for r in plan.resources}
    children: dict[str, list[str]] = {}
    for r in plan.resources:
        children.setdefault(r.parent, []).append(r.urn)

    def leaves(urn: str) -> set[str]:
        if urn not in by_urn:
            raise api.RehearsalError(f"a dependency on {urn} that the plan does not hold")
        r = by_urn[urn]
        if not r.type.startswith(COMPONENT_PREFIX):
            return {r.name}
        return set().union(*(leaves(c) for c in children.get(urn, [])))

    real = [r for r in plan.resources if not r.type.startswith(IGNORED_TYPES)]
    names = [r.name for r in real]
    if len(set(names)) != len(names):
        raise api.RehearsalError(f"two resources share a name: {sorted(n for n in names if names.count(n) > 1)}")
    return [{"type": r.type, "name": r.name, "inputs": r.inputs, "retainOnDelete": r.retain_on_delete,
             "outputs": r.outputs, "dependsOn": sorted(set().union(set(), *(leaves(u) for u in r.depends_on))),
             "provider": r.provider, "deleteBeforeReplace": r.delete_before_replace}
            for r in plan.resources]


def _labels(inputs: Mapping[str, Any]) -> dict[str, str]:
    return {item["label"]: item["value"] for item in reveal(inputs).get("labels") or []}


def containers(plan: Plan) -> dict[str, dict[str, Any]]:
    """Container resource name -> its revealed inputs."""
    return {r.name: reveal(r.inputs) for r in plan.of_type(api.CONTAINER)}


def standin_tags(plan: Plan) -> dict[str, list[str]]:
    """Stand-in kind (the container's llmstack.component label) -> the image names the program pins."""
    tags = {r.outputs["imageId"]: r.inputs["name"] for r in plan.of_type(api.REMOTE_IMAGE)}
    kinds: dict[str, list[str]] = {}
    for inputs in containers(plan).values():
        kind = _labels(inputs)["llmstack.component"]
        kinds.setdefault(kind, [])
        if tags[inputs["image"]] not in kinds[kind]:
            kinds[kind].append(tags[inputs["image"]])
    return kinds


def gateway_containers(plan: Plan) -> list[str]:
    """The docker names of the LiteLLM containers (the gateway's replicas), the first replica's first."""
    return [i["name"] for n, i in sorted(containers(plan).items()) if _labels(i)["llmstack.component"] == "litellm"]


def gateway_container(plan: Plan) -> str:
    """The docker name of the (first replica's) LiteLLM container."""
    return gateway_containers(plan)[0]


def smoke_argv(plan: Plan, ca_file: Optional[str]) -> list[str]:
    """config.smoke's command line: the plan's gateway URL (the edge's), master key and model lists, and the
    stack CA's certificate (the caCertificate output, written to `ca_file`) to trust."""
    outputs = reveal(plan.outputs)
    models = {"models": outputs["models"], "toolModels": outputs["toolModels"]}
    return ["--url", outputs["gatewayUrl"], "--key", outputs["masterKey"], *(["--ca", ca_file] if ca_file else []),
            "--models-json", json.dumps(models), "--timeout", str(SMOKE_TIMEOUT_S)]


def engines_of(records: list[dict[str, Any]]) -> dict[str, api.Engine]:
    """Docker provider name -> the rehearsal engine at the socket its `host` names (A or B)."""
    engines = {}
    for provider, socket_path in api.provider_sockets(records).items():
        if socket_path not in ENGINE_SOCKETS:
            raise api.RehearsalError(f"{provider}: Docker host unix://{socket_path} is not one of the rehearsal's "
                                     f"engines ({', '.join(ENGINE_SOCKETS)})")
        engines[provider] = api.Engine(socket_path)
    return engines


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Report:
    """What a rehearsal did and saw; test_rehearsal.py asserts on it."""

    run_label: str
    port: int                                                         # the edge's HTTPS port on 127.0.0.1
    started: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)            # phase -> seconds
    health: dict[str, tuple[float, float]] = field(default_factory=dict)  # container -> (start, healthy) s after up began
    pulls: dict[str, float] = field(default_factory=dict)             # pull command -> s after up began
    healthy: dict[str, str] = field(default_factory=dict)             # container -> docker health status after up
    healthchecks_match: dict[str, bool] = field(default_factory=dict)  # container -> engine's test == the plan's
    depends_on: dict[str, list[str]] = field(default_factory=dict)     # resource -> what `up` made it wait for
    published: dict[str, list[str]] = field(default_factory=dict)      # container -> "ip:port->port/proto" on the engine
    without_key: dict[str, str] = field(default_factory=dict)          # backend -> its answer to a call without key
    gateway_redis_commands: list[str] = field(default_factory=list)   # last command of each gateway connection to Redis
    ollama_models_after_up: list[str] = field(default_factory=list)
    smoke: list[tuple[int, str]] = field(default_factory=list)         # (exit status, table), per smoke run
    changes: list[Change] = field(default_factory=list)               # effective diff of the changed model
    replaced_containers: set[str] = field(default_factory=set)
    untouched_ids: dict[str, bool] = field(default_factory=dict)      # container -> same docker id after change
    retained: list[str] = field(default_factory=list)                 # destroy's retainOnDelete report
    volumes_after_destroy: list[str] = field(default_factory=list)
    expected_retained_volumes: list[str] = field(default_factory=list)
    objects_after_destroy: list[str] = field(default_factory=list)    # containers/networks left (should be none)
    ollama_models_after_destroy: list[str] = field(default_factory=list)
    postgres_data_after_destroy: bool = False
    left_after_cleanup: list[str] = field(default_factory=list)
    seconds: float = 0.0
    gateway_url: str = ""                                             # the gatewayUrl output (the edge's)
    ca_subject: str = ""                                              # the caCertificate output's subject
    without_ca: str = ""                                              # a call to the edge that trusts only the system CAs
    edge_served: dict[str, dict[str, int]] = field(default_factory=dict)  # the changed gateway's access log by client (edge_requests)
    targets: dict[str, str] = field(default_factory=dict)             # scrape job -> health, as Prometheus sees it
    probes: dict[str, str] = field(default_factory=dict)              # probed engine -> probe_success
    gateway_requests: dict[str, float] = field(default_factory=dict)  # requested_model -> LiteLLM's request counter
    deployment_states: dict[str, str] = field(default_factory=dict)   # litellm_model_name -> litellm_deployment_state
    gateway_models: list[str] = field(default_factory=list)           # model names of the gateway's config
    gpu_memory_used: dict[str, str] = field(default_factory=dict)     # host/gpu -> DCGM_FI_DEV_FB_USED (stand-in)
    rules_health: dict[str, str] = field(default_factory=dict)        # alert rule -> health
    stopped_engine_alerts: list[tuple[str, str, str]] = field(default_factory=list)  # (alert, state, model) after a stop
    grafana_dashboards: list[str] = field(default_factory=list)       # titles Grafana serves (admin password of the outputs)
    grafana_datasource: str = ""
    change_loop: Optional[LoopFigures] = None                         # the client loop while the change was applied

    def summary(self) -> str:
        lines = [f"rehearsal {self.run_label}: {self.seconds:.1f}s in all (edge {self.gateway_url} on 127.0.0.1:{self.port}, "
                 f"CA {self.ca_subject!r}; without it: {self.without_ca})"]
        lines += [f"  {phase:<10} {s:6.1f}s" for phase, s in self.phases.items()]
        lines.append("  containers (created -> healthy, seconds after up began):")
        lines += [f"    {n:<18} {a:5.1f} -> {b:5.1f}  ({b - a:4.1f}s to healthy)"
                  for n, (a, b) in sorted(self.health.items(), key=lambda kv: kv[1][1])]
        lines += [f"    {n:<18} pulled at {s:5.1f}" for n, s in sorted(self.pulls.items(), key=lambda kv: kv[1])]
        lines.append(f"  published: { {n: p for n, p in self.published.items() if p} }; "
                     f"calls without key: {self.without_key}; gateway on Redis: {self.gateway_redis_commands}")
        lines.append("  changed model -> " + ", ".join(f"{c.action} {c.name}" for c in self.changes))
        if self.change_loop is not None:
            lines.append("  " + self.change_loop.summary())
        lines.append(f"  prometheus targets: {self.targets}; probes: {self.probes}")
        lines.append(f"  gateway requests by model: {self.gateway_requests}; deployment states: {self.deployment_states}")
        lines.append(f"  after stopping {STOPPED_ENGINE}: {self.stopped_engine_alerts}; grafana: {self.grafana_dashboards}")
        lines.append(f"  the gateway's requests by client (after the change): {self.edge_served}")
        lines.append(f"  after destroy: volumes {self.volumes_after_destroy}, ollama store {self.ollama_models_after_destroy}, "
                     f"postgres data {'present' if self.postgres_data_after_destroy else 'MISSING'}")
        return "\n".join(lines)


def _phase(report: Report, name: str, t0: float) -> None:
    report.phases[name] = time.monotonic() - t0


def check_names_free(engine: api.Engine, plan: Plan) -> None:
    """The program's fixed container names must not belong to anything but a rehearsal (a dev deploy)."""
    for inputs in containers(plan).values():
        info = engine.inspect_container(inputs["name"])
        if info is not None and not api._labelled(info, None):
            raise api.RehearsalError(f"container {inputs['name']} exists on this engine and is not a rehearsal's: "
                                     f"stop that deployment first (the rehearsal uses the program's container names)")


def run_smoke(plan: Plan, ca_file: Optional[str], engine: api.Engine, log: Log) -> tuple[int, str]:
    out = io.StringIO()
    code = smoke.main(smoke_argv(plan, ca_file), out=out)
    log(out.getvalue())
    if code != 0:
        gateway = gateway_container(plan)
        raise api.RehearsalError(f"smoke check exited {code}:\n{out.getvalue()}\n--- {gateway} logs\n"
                                 f"{engine.logs(gateway, tail=80)}")
    return code, out.getvalue()


#: Calls from inside the gateway container, by network alias, without the key the gateway holds:
#: each backend must refuse them (its key reached it through the container's env).
UNAUTHENTICATED_CALLS = {
    "vllm": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://qwen3-0.6b:8000/v1/models"],
    "infinity": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://infinity:7997/models"],
    "speaches": ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://speaches:8000/v1/models"],
    "redis": ["redis-cli", "-h", "litellm-redis", "ping"],
}


def probe_wiring(engine: api.Engine, plan: Plan, report: Report) -> None:
    """What the engine shows of the deployed wiring: health, published ports, keys that are required."""
    for name, inputs in containers(plan).items():
        info = engine.inspect_container(inputs["name"]) or {}
        report.healthy[name] = ((info.get("State") or {}).get("Health") or {}).get("Status", "none")
        report.healthchecks_match[name] = ((info.get("Config") or {}).get("Healthcheck") or {}).get("Test") \
            == (inputs.get("healthcheck") or {}).get("tests")
        ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
        report.published[name] = sorted(f"{b['HostIp']}:{b['HostPort']}->{p}" for p, bs in ports.items() for b in bs or [])
    gateway = gateway_container(plan)
    for backend, argv in UNAUTHENTICATED_CALLS.items():
        code, out = engine.exec(gateway, argv, timeout=30)
        report.without_key[backend] = out.strip() or f"exit {code}"
    # LiteLLM's router uses Redis with the password from the gateway's env (a wrong one would leave `auth`)
    info = engine.inspect_container(gateway) or {}
    ips = [n["IPAddress"] for n in ((info.get("NetworkSettings") or {}).get("Networks") or {}).values()]
    redis = [i["name"] for i in containers(plan).values() if _labels(i)["llmstack.component"] == "redis"][0]
    code, out = engine.exec(redis, ["sh", "-c", 'redis-cli -a "$REDIS_PASSWORD" --no-auth-warning client list'])
    fields = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in out.splitlines()]
    report.gateway_redis_commands = sorted(f.get("cmd", "?") for f in fields if f.get("addr", "").rsplit(":", 1)[0] in ips)
    code, out = engine.exec(containers(plan)["ollama"]["name"], ["ollama", "list"], timeout=30)
    report.ollama_models_after_up = sorted(line.split()[0] for line in out.splitlines()[1:] if line.strip())


#: The engine the monitoring check stops: a scraped one (its `up` turns 0); its resource name, which is also
#: its network alias and its `model` label.
STOPPED_ENGINE = "infinity"
MONITORING_WAIT_S = 60.0


def _get_json(url: str, auth: Optional[tuple[str, str]] = None, ca_file: Optional[str] = None) -> Any:
    import base64
    import urllib.request

    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.loads(response.read())


def call_without_ca(url: str) -> str:
    """What a client that trusts only the system's CAs gets from the edge: a certificate error."""
    try:
        _get_json(url)
    except Exception as e:  # noqa: BLE001 - the error itself is the answer
        return f"{type(e).__name__}: {getattr(e, 'reason', e)}"
    return "answered"


def prometheus_api(engine: api.Engine, plan: Plan) -> Callable[[str], Any]:
    """GET on Prometheus' API from inside its own container: with the edge on, Prometheus publishes nothing
    (it has no login of its own)."""
    name = containers(plan)["prometheus"]["name"]

    def get(path: str) -> Any:
        code, out = engine.exec(name, ["curl", "-sS", "--fail", "--max-time", "10", f"http://127.0.0.1:9090{path}"], timeout=30)
        if code != 0:
            raise api.RehearsalError(f"prometheus {path}: curl exited {code}: {out[-500:]}")
        return json.loads(out)

    return get


def _wait(what: str, probe: Callable[[], Any], done: Callable[[Any], bool], timeout: float = MONITORING_WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise api.RehearsalError(f"monitoring: {what} not seen within {timeout:g}s; last: {value}")
        time.sleep(0.5)


def check_monitoring(engine: api.Engine, plan: Plan, report: Report, log: Log, ca_file: str) -> None:
    """After the smoke check: Prometheus (asked from inside its container) sees every target up, the
    gateway's request counter and deployment state per model; a stopped engine makes TargetDown pending;
    Grafana, through the edge at /grafana/ (the grafanaUrl output), serves the generated dashboards to the
    admin password of the stack outputs."""
    prometheus = prometheus_api(engine, plan)
    grafana = reveal(plan.outputs)["grafanaUrl"].rstrip("/")

    def query(expr: str) -> list[dict]:
        return prometheus("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]["result"]

    def targets() -> dict[str, str]:
        active = prometheus("/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}

    report.targets = _wait("every target up", targets, lambda t: bool(t) and set(t.values()) == {"up"})
    probes = _wait("every probe succeeding", lambda: {r["metric"]["engine"]: r["value"][1] for r in query("probe_success")},
                   lambda p: bool(p) and set(p.values()) == {"1"})
    report.probes = probes
    report.gateway_models = sorted({m["model_name"] for m in gateway_models(plan)})
    requests = _wait("LiteLLM's request counter for every model",
                     lambda: {r["metric"]["requested_model"]: float(r["value"][1])
                              for r in query("sum by (requested_model) (litellm_proxy_total_requests_metric_total)")},
                     lambda r: set(report.gateway_models) <= set(r))
    report.gateway_requests = requests
    report.deployment_states = _wait(
        "a deployment state for every deployment",
        lambda: {r["metric"]["litellm_model_name"]: r["value"][1] for r in query("max by (litellm_model_name) (litellm_deployment_state)")},
        lambda d: len(d) >= len(gateway_models(plan)))
    report.gpu_memory_used = {f"{r['metric']['host']}/{r['metric']['gpu']}": r["value"][1] for r in query("DCGM_FI_DEV_FB_USED")}
    rules = {r["name"]: r for g in prometheus("/api/v1/rules")["data"]["groups"] for r in g["rules"]}
    report.rules_health = {name: rule["health"] for name, rule in rules.items()}

    outputs = reveal(plan.outputs)
    admin = ("admin", outputs["grafanaAdminPassword"])
    report.grafana_dashboards = sorted(b["title"] for b in _get_json(f"{grafana}/api/search", admin, ca_file))
    [source] = _get_json(f"{grafana}/api/datasources", admin, ca_file)
    report.grafana_datasource = source["url"]

    t0 = time.monotonic()
    engine.request("POST", f"/containers/{containers(plan)[STOPPED_ENGINE]['name']}/stop", params={"t": 5})

    def pending() -> list[tuple[str, str, str]]:
        groups = prometheus("/api/v1/rules")["data"]["groups"]
        return sorted((r["name"], a["state"], a["labels"].get("model", "")) for g in groups for r in g["rules"] for a in r.get("alerts") or [])

    report.stopped_engine_alerts = _wait(f"TargetDown pending for {STOPPED_ENGINE}", pending, bool)
    log(f"[rehearsal] monitoring: {STOPPED_ENGINE} stopped; alerts after {time.monotonic() - t0:.1f}s: {report.stopped_engine_alerts}")


def gateway_models(plan: Plan) -> list[dict]:
    """The model_list of the gateway's uploaded config."""
    [gateway] = [r for r in plan.of_type(api.CONTAINER) if r.name == "gateway"]
    [upload] = [u for u in reveal(gateway.inputs["uploads"]) if u["file"] == "/app/config.yaml"]
    return yaml.safe_load(upload["content"])["model_list"]


def apply_change(engine: api.Engine, before: Plan, after: Plan, changes: list[Change], *, images: Mapping[str, str],
                 run_label: str, log: Log, engines: Optional[Mapping[str, api.Engine]] = None) -> None:
    """Carry out the diff like `pulumi up`: replaced containers marked deleteBeforeReplace are deleted first
    (their names are fixed), created and replaced resources created (pull commands whose `create` changed
    re-run it), then the other replaced containers (a generated name: the new one was created and healthy
    first, like Pulumi's default) and removed resources deleted (a dropped pull runs its `delete`: the model
    leaves the store). Changes of types that create nothing on a Docker host (random ids) are in the new plan's
    inputs already."""
    changes = [c for c in changes if not c.type.startswith(IGNORED_TYPES)]
    unsupported = [c for c in changes if c.action in (CREATE, REPLACE, DELETE)
                   and c.type not in (api.CONTAINER, api.LOCAL_COMMAND)]
    if unsupported:
        raise api.RehearsalError("the rehearsal applies container and command changes only:\n"
                                 + "\n".join(f"  {c}" for c in unsupported))
    old = {(r["type"], r["name"]): r for r in records_of(before)}
    new_records = records_of(after)
    def remove(rec: Mapping[str, Any]) -> None:
        grace = reveal(rec["inputs"]).get("destroyGraceSeconds")
        api.engine_for(rec, engine, engines).remove_container(str(reveal(rec["inputs"]["name"])),
                                                              stop_timeout=int(grace) if grace is not None else 10)
        log(f"[rehearsal] replace: removed container {rec['name']} ({reveal(rec['inputs']['name'])})")

    replaced = [old[(c.type, c.name)] for c in changes if c.type == api.CONTAINER and c.action == REPLACE]
    for rec in replaced:
        if rec.get("deleteBeforeReplace"):
            remove(rec)
    redo = {c.name for c in changes if c.action in (CREATE, REPLACE)
            or (c.action == UPDATE and c.type == api.LOCAL_COMMAND)}
    api.up(new_records, images=images, binds=si.rehearsal_binds(), env_overrides={name: GATEWAY_ENV_OVERRIDE for name in gateway_containers(after)},
           run_label=run_label, engine=engine, ignore_types=IGNORED_TYPES, concurrency=CONCURRENCY,
           only=redo, wait_cap=WAIT_CAP_S, log=log, engines=engines)
    for rec in replaced:
        if not rec.get("deleteBeforeReplace"):
            remove(rec)
    for c in changes:
        if c.action == DELETE:
            rec = old[(c.type, c.name)]
            if c.type == api.LOCAL_COMMAND:
                api.run_command(api.command_spec(rec), "delete", log=log)
            else:
                api.engine_for(rec, engine, engines).remove_container(str(reveal(rec["inputs"]["name"])), stop_timeout=10)


def volume_path(engine: api.Engine, name: str) -> Path:
    """Where a local volume's data is on this host (the rehearsal runs as root next to its engine)."""
    info = engine.inspect_volume(name)
    if info is None:
        raise api.RehearsalError(f"volume {name} is gone")
    return Path(info["Mountpoint"])


def rehearse(engine: Optional[api.Engine] = None, log: Log = print,
             edit: Optional[Callable[[dict[str, Any]], None]] = None) -> Report:
    """The whole rehearsal; always removes what it created (retained volumes included) before it returns or raises.
    edit: applied to the stack config (both plans) before the program runs."""
    engine = api.ensure_engine(engine)
    if engine.socket_path != DOCKER_HOST[len("unix://"):]:
        raise api.RehearsalError(f"the rehearsal stack's Docker host is {DOCKER_HOST}, but the engine is at "
                                 f"{engine.socket_path}: the pull scripts would reach another engine")
    every_engine = {"a": engine, "b": api.ensure_engine(api.Engine(api.ENGINE_B_SOCKET))}
    report = Report(run_label=f"rehearsal-{secrets.token_hex(4)}", port=free_port())
    t_start = report.started
    passwords, tls = Passwords(), TLSProvider()
    plan = record_plan(stack_config(report.port, edit=edit), passwords, tls=tls)
    changed = record_plan(stack_config(report.port, changed=True, edit=edit), passwords, tls=tls)
    records = records_of(plan)
    engines = engines_of(records)
    images = {**api.image_map(records), **api.image_map(records_of(changed))}
    overrides = {name: GATEWAY_ENV_OVERRIDE for name in gateway_containers(plan)}
    binds = si.rehearsal_binds()
    api.plan(records, images=images, binds=binds, env_overrides=overrides, ignore_types=IGNORED_TYPES)  # fails early
    outputs = reveal(plan.outputs)
    report.gateway_url = outputs["gatewayUrl"]
    _phase(report, "plan", t_start)

    t0 = time.monotonic()
    api.cleanup(engine, log=log, engines=every_engine)  # leftovers of an earlier, interrupted rehearsal
    check_names_free(engine, plan)
    si.build_standin_images(standin_tags(plan), engine=engine, log=log)
    _phase(report, "images", t0)
    with tempfile.TemporaryDirectory(prefix="llmstack-rehearsal-") as tmp:
        ca_file = str(Path(tmp) / "stack-ca.pem")
        Path(ca_file).write_text(outputs["caCertificate"])
        try:
            _run(engine, engines, every_engine, plan, changed, records, images, binds, overrides, passwords, report, log,
                 edit, ca_file)
        finally:
            teardown(engine, changed, report, log, every_engine)
    log(report.summary())
    return report


def _run(engine: api.Engine, engines: dict[str, api.Engine], every_engine: dict[str, api.Engine], plan: Plan,
         changed: Plan, records: list[dict[str, Any]], images: dict[str, str], binds: list[str],
         overrides: dict[str, dict[str, Optional[str]]], passwords: Passwords, report: Report, log: Log,
         edit: Optional[Callable[[dict[str, Any]], None]], ca_file: str) -> None:
    from cryptography import x509

    report.ca_subject = x509.load_pem_x509_certificate(Path(ca_file).read_bytes()).subject.rfc4514_string()
    t0 = time.monotonic()
    dep = api.up(records, images=images, binds=binds, env_overrides=overrides, run_label=report.run_label,
                 engine=engine, ignore_types=IGNORED_TYPES, concurrency=CONCURRENCY, wait_cap=WAIT_CAP_S, log=log,
                 engines=engines)
    _phase(report, "up", t0)
    report.health = {n: (dep.started[n] - t0, dep.finished[n] - t0) for n in containers(plan)}
    report.pulls = {r.name: dep.finished[r.name] - t0 for r in plan.of_type(api.LOCAL_COMMAND)}
    report.depends_on = {r["name"]: r["dependsOn"] for r in records if r["name"] in dep.created}
    probe_wiring(engine, plan, report)

    t0 = time.monotonic()
    report.without_ca = call_without_ca(f"{report.gateway_url}/health/readiness")
    report.smoke.append(run_smoke(plan, ca_file, engine, log))
    _phase(report, "smoke", t0)

    t0 = time.monotonic()
    report.changes = effective(diff_plans(
        record_plan(stack_config(report.port, edit=edit), passwords, deployable=False),
        record_plan(stack_config(report.port, changed=True, edit=edit), passwords, deployable=False)))
    log("[rehearsal] changed model " + " -> ".join(CHANGED_OLLAMA) + ": plan diff")
    for change in report.changes:
        log(f"  {change}")
    report.replaced_containers = {c.name for c in report.changes if c.type == api.CONTAINER and c.action == REPLACE}
    ids_before = {n: (engine.inspect_container(i["name"]) or {}).get("Id") for n, i in containers(plan).items()}
    # Clients keep calling through the edge while the change is applied (issue 15, benchmark 5b).
    outputs = reveal(plan.outputs)
    with ClientLoop(report.gateway_url, outputs["masterKey"], outputs["models"]["chat"][0], ca_file) as loop:
        apply_change(engine, plan, changed, report.changes, images=images, run_label=report.run_label, log=log,
                     engines=engines)
    report.change_loop = loop.figures
    log("[benchmark] " + loop.figures.summary())
    report.untouched_ids = {n: (engine.inspect_container(i["name"]) or {}).get("Id") == ids_before[n]
                            for n, i in containers(changed).items()}
    report.smoke.append(run_smoke(changed, ca_file, engine, log))
    _phase(report, "change", t0)

    t0 = time.monotonic()
    check_monitoring(engine, changed, report, log, ca_file)
    _phase(report, "monitoring", t0)
    report.edge_served = edge_requests(engine, changed)

    t0 = time.monotonic()
    # The pull commands are `deletedWith` their retained model store: `pulumi destroy` skips
    # their `delete`, so the models stay in the store. Hence run_commands=False.
    destroyed = api.destroy(records_of(changed), engine=engine, run_label=report.run_label, run_commands=False,
                            ignore_types=IGNORED_TYPES, log=log, engines=engines)
    _phase(report, "destroy", t0)
    report.retained = destroyed.retained
    report.expected_retained_volumes = sorted(str(reveal(r.inputs["name"])) for r in changed.of_type(api.VOLUME)
                                              if r.retain_on_delete)
    report.volumes_after_destroy = sorted(v["name"] for v in api.leftover_volumes(engine, run_label=report.run_label,
                                                                                   engines=every_engine))
    label = f"{api.REHEARSAL_LABEL}={report.run_label}"
    report.objects_after_destroy = [c["Names"][0] for e in every_engine.values() for c in e.list_containers(label)] + \
                                   [n["Name"] for e in every_engine.values() for n in e.list_networks(label)]
    ollama = containers(changed)["ollama"]["volumes"][0]["volumeName"]
    store = volume_path(engine, ollama) / "models" / "standin-models.json"
    report.ollama_models_after_destroy = sorted(json.loads(store.read_text())) if store.exists() else []
    pg = containers(changed)["gateway-postgres"]["volumes"][0]["volumeName"]
    report.postgres_data_after_destroy = (volume_path(engine, pg) / "PG_VERSION").is_file()


#: uvicorn's access log line, as LiteLLM's proxy writes it: `INFO:     172.20.0.9:51234 - "POST /v1/embeddings HTTP/1.1" 200 OK`.
ACCESS_LOG = re.compile(r'(\d+\.\d+\.\d+\.\d+):\d+ - "([A-Z]+) ([^ ?"]+)[^"]* HTTP/[\d.]+" (\d{3})')


def edge_requests(engine: api.Engine, plan: Plan) -> dict[str, dict[str, int]]:
    """Requests in the gateway's access log by client: `edge` (the edge container's address) or `other` (any other
    address but the container's own loopback, where its healthcheck runs) -> "METHOD path status" -> count."""
    edge = next(i["name"] for i in containers(plan).values() if _labels(i)["llmstack.component"] == "caddy")
    networks = ((engine.inspect_container(edge) or {}).get("NetworkSettings") or {}).get("Networks") or {}
    edge_ips = {n["IPAddress"] for n in networks.values()}
    counts: dict[str, dict[str, int]] = {"edge": {}, "other": {}}
    logs = "\n".join(engine.logs(name, tail=5000) for name in gateway_containers(plan))
    for match in ACCESS_LOG.finditer(logs):
        ip, method, path, status = match.groups()
        if ip == "127.0.0.1":
            continue
        who = counts["edge" if ip in edge_ips else "other"]
        key = f"{method} {path} {status}"
        who[key] = who.get(key, 0) + 1
    return counts


def teardown(engine: api.Engine, plan: Plan, report: Report, log: Log,
             every_engine: Optional[Mapping[str, api.Engine]] = None) -> None:
    """Remove everything of this run on every engine, retained volumes included; never masks the rehearsal's own
    error (what could not be removed ends up in report.left_after_cleanup)."""
    t0 = time.monotonic()
    records = records_of(plan)
    for step in ("destroy", "cleanup"):
        try:
            if step == "destroy":  # after a failure: what `up` got to create (a no-op after a destroy)
                api.destroy(records, engine=engine, run_label=report.run_label, run_commands=False,
                            ignore_types=IGNORED_TYPES, log=lambda _: None, engines=engines_of(records))
            else:
                api.cleanup(engine, run_label=report.run_label, log=log, engines=every_engine)
        except api.RehearsalError as e:
            log(f"[rehearsal] teardown: {step}: {e}")
    label = f"{api.REHEARSAL_LABEL}={report.run_label}"
    engines = api.distinct_engines(engine, every_engine)
    report.left_after_cleanup = [f"volume {v['name']}" for v in api.leftover_volumes(engine, run_label=report.run_label,
                                                                                      engines=every_engine)]
    report.left_after_cleanup += [f"container {c['Names'][0]}" for e in engines for c in e.list_containers(label)]
    report.left_after_cleanup += [f"network {n['Name']}" for e in engines for n in e.list_networks(label)]
    _phase(report, "cleanup", t0)
    report.seconds = time.monotonic() - report.started


def main() -> int:
    try:
        report = rehearse()
    except api.RehearsalError as e:
        print(f"rehearsal FAILED:\n{e}", file=sys.stderr)
        return 1
    return 0 if not report.left_after_cleanup else 1


if __name__ == "__main__":
    sys.exit(main())
