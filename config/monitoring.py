"""`llmstack:monitoring`: Prometheus, Grafana and a GPU exporter per GPU host, wired from the validated stack and its engines.

Nothing here is written by hand per model: the scrape targets, the probes, the dashboards' rows and the GPU
panels all come from the engine sections (config/registry.py), the deployed engines and the GPU plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional, TypedDict
from urllib.parse import urlparse, urlsplit

import pulumi

from components.alert_rules import AlertThresholds
from components.dashboards import DashboardModel, GpuReservation
from components.gpu_exporter import GpuExporter, GpuExporterArgs
from components.caddy import ExtraRoute, relay_route_name, relay_url
from components.grafana import HOSTNAME as GRAFANA_HOSTNAME
from components.grafana import PORT as GRAFANA_PORT
from components.grafana import Grafana, GrafanaArgs
from components.litellm import LiteLLMProxy
from components.litellm_metrics import METRICS_PORT
from components.metrics_catalog import GATEWAY, GPU_EXPORTER, INFINITY, OLLAMA, SPEACHES, VLLM
from components.prometheus import Prometheus, PrometheusArgs
from components.scrape_config import DEFAULT_PATHS, ScrapeTarget

from . import registry
from .deployment import DeployContext, PlacedEngine
from .engine_ids import image_problem
from .errors import ConfigIssue, key_path
from .gpu_plan import GpuPlan
from .placement import placements
from .schema import Engine, Monitoring, StackConfig, resolve_host

# How each engine section is watched. Scraped: it serves /metrics without a key (vLLM, Infinity). Probed:
# it has no /metrics (Ollama 0.35, Speaches 0.8.3), so blackbox_exporter checks its health route.
# Speaches 0.8.3 answers /health only with its bearer key when API_KEY is set (docs/engine-facts.md).
WATCHED_ENGINES = (VLLM, INFINITY, OLLAMA, SPEACHES)
PROBE_NEEDS_KEY = (SPEACHES,)
# The `model` label of the gateway's and the GPU exporters' targets.
GATEWAY_TARGET = "gateway"
GPUS_TARGET = "gpus"
# Replicas come with the several-hosts work; today every model has one.
ONLY_REPLICA = "0"
# The network aliases of the monitoring containers (their Docker names after the stack's prefix): no model may
# take one, in any case (Docker's DNS ignores case).
HOSTNAMES = (
    "prometheus",
    "prometheus-blackbox",
    "grafana",
    "dcgm-exporter",
)


def enabled(stack: StackConfig) -> bool:
    return stack.monitoring is not None and stack.monitoring.enabled


def summary(stack: StackConfig) -> str:
    """For `config check`: what monitoring deploys and where its UIs are, or that it is off."""
    if not enabled(stack):
        return "monitoring off"
    settings = stack.monitoring
    assert settings is not None
    parts = [
        f"{name} on {'127.0.0.1:' + str(port) if port is not None else 'the stack network only'}"
        for name, port in (("Prometheus", prometheus_port(stack)), ("Grafana", settings.grafana.port))
        if name == "Prometheus" or stack.edge is None
    ]
    if stack.edge is not None:
        parts.append(f"Grafana through the edge at {GRAFANA_EDGE_PATH}/")
    hosts = exporter_hosts(stack)
    parts.append(f"GPU exporter on {', '.join(hosts)}" if hosts else "no GPU exporter")
    return "monitoring: " + ", ".join(parts)


def gateway_metrics_args(stack: StackConfig) -> dict[str, Any]:
    """The LiteLLMProxy args that turn on its metrics listener (none when monitoring is off)."""
    return {"metrics_port": METRICS_PORT} if enabled(stack) else {}


def gpu_hosts(stack: StackConfig) -> list[str]:
    """Hosts that get a GPU exporter: those listing GPUs, and those where a service asks for GPUs."""
    hosts = {name for name, host in stack.hosts.items() if host.gpus}
    hosts |= {p.host for p in placements(stack) if p.block.gpus}
    return sorted(hosts & set(stack.hosts))


def address_of(url: pulumi.Input[str], port: Optional[int] = None) -> pulumi.Output[str]:
    """`alias:port` from a URL on the stack network (an engine's api_base, the gateway's internal URL)."""

    def parse(text: str) -> str:
        parsed = urlparse(text)
        if not parsed.hostname:
            raise ValueError(f"cannot scrape {text!r}: no host name in it")
        return f"{parsed.hostname}:{port or parsed.port}"

    return pulumi.Output.from_input(url).apply(parse)


# The credential name of the stack CA's certificate in Prometheus' files; the relay's route of a host's GPU exporter.
STACK_CA_CREDENTIAL = "stack-ca"
EXPORTER_ROUTE = "dcgm-exporter"


class RelayTarget(TypedDict):
    """The fields of a ScrapeTarget that send Prometheus through a host's relay."""

    address: str
    scheme: str
    path: str
    bearer_token: str
    tls_ca: str


def monitor_credential(host: str) -> str:
    """The credential name, in Prometheus' files, of the key that host's relay asks of Prometheus."""
    return f"relay-{host}"


def through_relay(stack: StackConfig, host: str, route: str, path: str) -> RelayTarget:
    """How Prometheus (on the gateway's host) reaches `path` of what runs at `/<route>/` behind the relay of `host`
    (config/relay.py): over TLS checked against the stack CA, with that relay's monitoring key; never through a
    published engine port."""
    config = stack.hosts[host]
    url = urlsplit(relay_url(config.client_address(), route, config.relay_port))
    return {
        "address": url.netloc,
        "scheme": "https",
        "path": f"{url.path}{path}",
        "bearer_token": monitor_credential(host),
        "tls_ca": STACK_CA_CREDENTIAL,
    }


def exporter_hosts(stack: StackConfig) -> list[str]:
    """The hosts that get a GPU exporter (none with monitoring or its exporter off)."""
    settings = stack.monitoring
    if not enabled(stack) or settings is None or not settings.gpu_exporter.enabled:
        return []
    return gpu_hosts(stack)


def engine_targets(
    stack: StackConfig, placed: Iterable[PlacedEngine], gateway_host: str
) -> tuple[list[ScrapeTarget], dict[str, pulumi.Output[str]]]:
    """One scrape or probe target per engine container (through its host's relay when that is not the gateway's),
    and the keys the probes send on the gateway's host (by credential name)."""
    targets: list[ScrapeTarget] = []
    credentials: dict[str, pulumi.Output[str]] = {}
    for engine in placed:
        if engine.engine not in WATCHED_ENGINES:
            raise ValueError(
                f"the engine section {engine.engine!r} has no monitoring description: add it to WATCHED_ENGINES in config/monitoring.py "
                "and its metrics to components/metrics_catalog.py"
            )
        host = engine.placement.host
        target: ScrapeTarget = {
            "engine": engine.engine,
            "model": engine.server,
            "host": host,
            "replica": engine.block.replica or ONLY_REPLICA,
            "address": address_of(engine.deployment.server.api_base),  # type: ignore[typeddict-item]
        }
        if host != gateway_host:
            # The relay checks its monitoring key and gives the engine its own.
            route = relay_route_name(engine.deployment.server.hostname)
            target.update(through_relay(stack, host, route, DEFAULT_PATHS[engine.engine]))  # type: ignore[typeddict-item]
        elif engine.engine in PROBE_NEEDS_KEY:
            key_env = engine.block.gateway_key_env()
            if key_env is None:
                raise ValueError(f"{engine.engine} needs its key for its health probe but has none")
            name = f"{engine.engine}-{engine.block.hostname()}".replace("/", "-")
            credentials[name] = pulumi.Output.secret(engine.deployment.server.backend_keys.apply(lambda keys, env=key_env: keys[env]))
            target["bearer_token"] = name
        targets.append(target)
    return targets, credentials


def dashboard_models(placed: Iterable[PlacedEngine]) -> list[DashboardModel]:
    """Every model of the stack with its engine and the target that serves it; a model with replicas is one row (its
    queries match every replica's series, which differ only in `host` and `replica`)."""
    models: dict[str, DashboardModel] = {}
    for engine in placed:
        for name, _ in engine.block.model_names():
            models.setdefault(name, {"name": name, "engine": engine.engine, "server": engine.server})
    return list(models.values())


def gpu_reservations(stack: StackConfig, plan: GpuPlan, hosts: Iterable[str]) -> list[GpuReservation]:
    """Each GPU of the watched hosts with the card's memory (inventory) and what the GPU plan reserves on it.

    A host without inventory shows the device ids its services name (`all` names none it can draw)."""
    found: list[GpuReservation] = []
    for host_name in hosts:
        host = stack.hosts[host_name]
        rows = [row for row in plan.rows if row.host == host_name]
        ids = [g.id for g in host.gpus] if host.gpus else sorted({row.gpu for row in rows if row.gpu != "all"})
        memory = {g.id: g.memory_gib for g in host.gpus or []}
        for gpu in ids:
            on_gpu = [row for row in rows if row.gpu == gpu and row.service is not None]
            reservation: GpuReservation = {"host": host_name, "gpu": gpu, "services": [row.service for row in on_gpu if row.service]}
            if gpu in memory:
                reservation["memory_gib"] = memory[gpu]
            if host.gpus and all(row.reserved_gib is not None for row in on_gpu):
                reservation["reserved_gib"] = round(sum(row.reserved_gib or 0.0 for row in on_gpu), 2)
            found.append(reservation)
    return found


def alert_thresholds(settings: Monitoring) -> AlertThresholds:
    """The alert limits the stack file sets (the rules' defaults for the others)."""
    return {k: v for k, v in settings.alerts.model_dump().items() if v is not None}  # type: ignore[return-value]


def monitoring_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    """Mistakes across `llmstack:monitoring` and the rest of the stack: clashing host ports, taken names, GPU hosts out of reach."""
    if not enabled(stack):
        return
    settings = stack.monitoring
    assert settings is not None
    gateway_host = resolve_host(stack, stack.gateway.host)
    # Host ports on the gateway's host: the gateway's (without an edge), the web UI's, Prometheus' and, without an
    # edge (which serves Grafana at /grafana/), Grafana's.
    ports = [] if stack.edge is not None else [(("gateway", "port"), stack.gateway.port)]
    if stack.webui is not None:
        ports.append((("webui", "port"), stack.webui.port))
    ports.append((("monitoring", "prometheus", "port"), prometheus_port(stack)))
    if stack.edge is None:
        ports.append((("monitoring", "grafana", "port"), settings.grafana.port))
    seen: dict[int, tuple] = {}
    for loc, port in ports:
        if port is None:
            continue
        if port in seen:
            yield ConfigIssue(key_path(loc), f"host port {port} is already taken by {key_path(seen[port])}", "choose another port")
        else:
            seen[port] = loc
    images = {
        ("prometheus", "image"): settings.prometheus.image,
        ("prometheus", "blackboxImage"): settings.prometheus.blackbox_image,
        ("grafana", "image"): settings.grafana.image,
        ("gpuExporter", "image"): settings.gpu_exporter.image,
    }
    for where, image in images.items():
        if image is not None and image_problem(image):
            yield ConfigIssue(key_path(("monitoring", *where)), f"{image!r} {image_problem(image)}", "write an image such as prom/prometheus:v3.13.2")
    for name, loc in registry.model_locations(stack):
        if name.lower() in HOSTNAMES:
            yield ConfigIssue(
                key_path(loc),
                f"{name!r} is the name of a monitoring container",
                f"choose another model name; monitoring uses {', '.join(HOSTNAMES)}",
            )



GRAFANA_EDGE_PATH = "/grafana"


def prometheus_port(stack: StackConfig) -> Optional[int]:
    """Prometheus' loopback port; none with an edge: nothing is published but through the edge, and Prometheus has no
    login of its own to be published with (query it in Grafana's Explore)."""
    assert stack.monitoring is not None
    return None if stack.edge is not None else stack.monitoring.prometheus.port


def edge_routes(stack: StackConfig) -> list[ExtraRoute]:
    """What the edge publishes of monitoring: Grafana at /grafana (it has its own login); never Prometheus (no auth)."""
    if not enabled(stack) or stack.edge is None:
        return []
    return [{"path": GRAFANA_EDGE_PATH, "upstream": f"{GRAFANA_HOSTNAME}:{GRAFANA_PORT}"}]


def deploy_monitoring(
    context: DeployContext,
    gateway: LiteLLMProxy,
    edge_url: Optional[str] = None,
    relay_keys: Optional[dict[str, pulumi.Output[str]]] = None,
    ca_cert: Optional[pulumi.Output[str]] = None,
) -> dict[str, Any]:
    """Registers the GPU exporters, Prometheus and Grafana of the stack (nothing when monitoring is off); returns stack outputs.

    With an edge (`edge_url`), Grafana is served through it at /grafana instead of on the host's loopback. Targets on
    other hosts are reached through their relays, with each relay's monitoring key (`relay_keys`, by host) and the
    stack CA's certificate (`ca_cert`)."""
    stack = context.stack
    if not enabled(stack):
        return {}
    settings = stack.monitoring
    assert settings is not None
    gateway_host = resolve_host(stack, stack.gateway.host)
    site = context.sites[gateway_host]
    placed = context.placed

    targets, credentials = engine_targets(stack, placed, gateway_host)
    # Each gateway replica has its own metrics listener (the shared `litellm` alias would reach one at random).
    replicas = stack.gateway.replicas if stack.edge is not None else 1
    for index in range(replicas):
        address = gateway.upstreams.apply(lambda hosts, i=index: f"{hosts[i].rsplit(':', 1)[0]}:{METRICS_PORT}")
        targets.append(
            {
                "engine": GATEWAY,
                "model": GATEWAY_TARGET,
                "host": gateway_host,
                "replica": ONLY_REPLICA if replicas == 1 else str(index + 1),
                "address": address,  # type: ignore[typeddict-item]
            }
        )
    watched_hosts = exporter_hosts(stack)
    for host in watched_hosts:
        exporter_args: GpuExporterArgs = {"network_name": context.sites[host].network.name}
        if context.name_prefix:
            exporter_args["name_prefix"] = context.name_prefix
        if settings.gpu_exporter.image:
            exporter_args["image"] = settings.gpu_exporter.image
        exporter = GpuExporter(f"gpu-exporter-{host}", exporter_args, opts=context.sites[host].options())
        targets.append(
            {
                "engine": GPU_EXPORTER,
                "model": GPUS_TARGET,
                "host": host,
                "replica": ONLY_REPLICA,
                "address": exporter.address,  # type: ignore[typeddict-item]
                **(through_relay(stack, host, EXPORTER_ROUTE, DEFAULT_PATHS[GPU_EXPORTER]) if host != gateway_host else {}),
            }
        )

    prometheus_args: PrometheusArgs = {
        "network_name": site.network.name,
        "targets": targets,
        "retention": settings.retention,
        "scrape_interval": settings.scrape_interval,
        # Rules are evaluated as often as targets are scraped: an alert goes pending at the first evaluation that sees it.
        "evaluation_interval": settings.scrape_interval,
        "alert_thresholds": alert_thresholds(settings),
    }
    for host, key in sorted((relay_keys or {}).items()):
        credentials[monitor_credential(host)] = key
    if credentials:
        prometheus_args["credentials"] = credentials
    if any("tls_ca" in target for target in targets):
        if ca_cert is None:
            raise ValueError("targets behind a relay need the stack CA's certificate")
        prometheus_args["ca_certificates"] = {STACK_CA_CREDENTIAL: ca_cert}
    if context.name_prefix:
        prometheus_args["name_prefix"] = context.name_prefix
    optional: dict[str, Any] = {
        "bind_port": prometheus_port(stack),
        "image": settings.prometheus.image,
        "blackbox_image": settings.prometheus.blackbox_image,
    }
    prometheus_args.update({k: v for k, v in optional.items() if v is not None})  # type: ignore[typeddict-item]
    prometheus = Prometheus("prometheus", prometheus_args, opts=site.options())

    grafana_args: GrafanaArgs = {
        "network_name": site.network.name,
        "prometheus_url": prometheus.internal_url,
        "models": dashboard_models(placed),
        "gpus": gpu_reservations(stack, context.gpu_plan, watched_hosts),
    }
    if context.name_prefix:
        grafana_args["name_prefix"] = context.name_prefix
    if edge_url is not None:
        grafana_args["root_url"] = f"{edge_url}{GRAFANA_EDGE_PATH}/"
        grafana_args["serve_from_sub_path"] = True
    elif settings.grafana.port is not None:
        grafana_args["bind_port"] = settings.grafana.port
    if settings.grafana.image:
        grafana_args["image"] = settings.grafana.image
    # Grafana needs only Prometheus' URL, not a healthy Prometheus: both start together.
    grafana = Grafana("grafana", grafana_args, opts=site.options())

    outputs: dict[str, Any] = {"grafanaAdminPassword": pulumi.Output.secret(grafana.admin_password)}
    # Published on the gateway host's loopback only (reach them with `ssh -L` from elsewhere).
    if edge_url is not None:
        outputs["grafanaUrl"] = f"{edge_url}{GRAFANA_EDGE_PATH}/"
    elif settings.grafana.port is not None:
        outputs["grafanaUrl"] = f"http://127.0.0.1:{settings.grafana.port}"
    if prometheus_port(stack) is not None:
        outputs["prometheusUrl"] = f"http://127.0.0.1:{prometheus_port(stack)}"
    return outputs

