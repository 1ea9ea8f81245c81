"""The relays: on each host that runs engines but not the gateway, one Caddy (components/caddy.py) in front of them.

Engines never publish a port. The relay publishes one (`llmstack:hosts.<host>.relayPort`, 8443) on the host's
address, serves a certificate from the stack CA (the gateway trusts that CA alone), and forwards to each engine
on its host only the paths LiteLLM calls, after checking that engine's bearer key. An engine without a key of
its own (Ollama) gets a generated one that only the relay checks. The gateway's model entries for an engine
behind a relay point at it: `https://10.0.0.2:8443/qwen3/v1`.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pulumi

from components import container
from components.caddy import (
    MONITOR_ONLY,
    RELAY_PORT,
    CaddyProxy,
    CaddyProxyArgs,
    RelayRoute,
    relay_route_name,
    relay_url,
    render_relay_caddyfile,
    split_names,
    tls_files,
)
from components.gpu_exporter import HOSTNAME as EXPORTER_HOSTNAME
from components.gpu_exporter import PORT as EXPORTER_PORT
from components.metrics_catalog import GPU_EXPORTER
from components.scrape_config import DEFAULT_PATHS
from components.model_entry import LiteLLMModelEntry, key_env_name
from components.stack_ca import StackCA

from . import monitoring
from .deployment import DeployContext, PlacedEngine
from .errors import ConfigIssue, key_path
from .placement import gateway_host, remote_hosts
from .registry import RELAY_HOSTNAME
from .schema import StackConfig

# The relay's env holding the key Prometheus shows (one per relay), and the route of the host's GPU exporter.
MONITOR_KEY_ENV = "MONITOR_KEY"
@dataclass
class Relayed:
    """What the gateway needs from the relays: each engine's model entries (pointing at its relay when it has one),
    in placement order, and the keys that only a relay checks (gateway env -> key, secret)."""

    entries: list[pulumi.Output[list[LiteLLMModelEntry]]]
    keys: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    relays: dict[str, CaddyProxy] = field(default_factory=dict)
    """The relay of each remote host."""
    monitor_keys: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    """Host -> the key Prometheus shows that host's relay to reach its monitoring paths (secret)."""


def relay_hosts(stack: StackConfig) -> list[str]:
    """The hosts that get a relay: those running engines but not the gateway, and those whose GPU exporter
    Prometheus (on the gateway's host) must reach."""
    home = gateway_host(stack)
    return sorted(set(remote_hosts(stack)) | {h for h in monitoring.exporter_hosts(stack) if h != home})


def relay_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    """A host with a relay says where the gateway (and Prometheus) reaches it."""
    for host in relay_hosts(stack):
        if stack.hosts[host].client_address() == "localhost":
            yield ConfigIssue(
                key_path(("hosts", host, "address")),
                f"host {host!r} runs engines (or a GPU exporter) away from the gateway, so the gateway's host reaches them "
                "through its relay, but the host has no address to dial",
                f"set llmstack:hosts.{host}.address to the host's IP address or DNS name on the gateway's network",
            )


def relay_key_env(route: str) -> str:
    """The relay container's env holding the key of the engine at `/<route>/`: `KEY_QWEN3_GPU_02`."""
    return "KEY_" + "".join(ch if ch.isalnum() else "_" for ch in route).upper()


def keyless_engine_env(server_component: str, hostname: str) -> str:
    """The gateway env of the key a relay requires in front of an engine without one (Ollama): `OLLAMA_API_KEY`,
    `OLLAMA_OLLAMA_GPU_02_API_KEY` (the same form as the other engines' envs)."""
    return key_env_name(server_component, "" if hostname == server_component else hostname)


def relayed_entries(entries: Sequence[LiteLLMModelEntry], upstream: str, base: str, key_env: str) -> list[LiteLLMModelEntry]:
    """The entries of an engine at `http://<upstream>...`, pointed at `base` (its relay URL) with the relay's key env."""
    origin = f"http://{upstream}"
    moved: list[LiteLLMModelEntry] = []
    for entry in entries:
        api_base = entry["api_base"]
        if api_base != origin and not api_base.startswith(origin + "/"):
            raise ValueError(f"model {entry['model_name']!r}: api_base {api_base!r} is not on the engine's upstream {upstream!r}")
        moved.append({**entry, "api_base": base + api_base[len(origin):], "api_key_env": key_env})
    return moved


def _bind_ip(address: str) -> str:
    # The port is bound to the address the gateway dials when it is an IP; a DNS name could resolve to anything.
    _, ips = split_names([address])
    return ips[0] if ips else "0.0.0.0"


def deploy_relays(context: DeployContext, ca: StackCA | None) -> Relayed:
    """A relay on every host that runs engines but not the gateway (or a GPU exporter to watch), and the gateway's
    view of every engine."""
    stack = context.stack
    hosts = relay_hosts(stack)
    if hosts and ca is None:
        raise ValueError("engines on other hosts than the gateway's need the stack CA for their relays")
    watched = monitoring.enabled(stack)
    exporters = set(monitoring.exporter_hosts(stack))
    relayed = Relayed(entries=[placed.deployment.server.model_entries for placed in context.placed])
    for host in hosts:
        config = stack.hosts[host]
        address = config.client_address()
        routes: list[RelayRoute] = []
        secret_envs: dict[str, pulumi.Input[str]] = {}
        if watched:
            relayed.monitor_keys[host] = container.generated_secret(f"{monitoring.monitor_credential(host)}-monitor-key", None)
            secret_envs[MONITOR_KEY_ENV] = relayed.monitor_keys[host]
        if host in exporters:
            routes.append(
                {
                    "name": monitoring.EXPORTER_ROUTE,
                    "engine": MONITOR_ONLY,
                    "upstream": f"{EXPORTER_HOSTNAME}:{EXPORTER_PORT}",
                    "key_env": MONITOR_KEY_ENV,
                    "monitor_path": DEFAULT_PATHS[GPU_EXPORTER],
                }
            )
        for index, placed in enumerate(context.placed):
            if placed.placement.host != host:
                continue
            deployed = placed.deployment
            route_name, key_env, key = _engine_key(placed, relayed)
            route: RelayRoute = {
                "name": route_name,
                "engine": deployed.server.component,
                "upstream": deployed.server.upstream,
                "key_env": relay_key_env(route_name),
            }
            if watched:
                route["monitor_path"] = DEFAULT_PATHS[deployed.server.component]
            routes.append(route)
            secret_envs[route["key_env"]] = key
            base = relay_url(address, route_name, config.relay_port)
            relayed.entries[index] = deployed.server.model_entries.apply(
                lambda entries, upstream=deployed.server.upstream, base=base, env=key_env: relayed_entries(entries, upstream, base, env)
            )
        assert ca is not None
        dns_names, ip_addresses = split_names([address])
        certificate = ca.issue_server_certificate(f"relay-{host}", dns_names=dns_names, ip_addresses=ip_addresses)
        args: CaddyProxyArgs = {
            "network_name": context.sites[host].network.name,
            "caddyfile": render_relay_caddyfile(
                routes, server_name=address, port=RELAY_PORT, monitor_key_env=MONITOR_KEY_ENV if watched else None
            ),
            "files": tls_files(certificate.cert_pem, certificate.private_key_pem),
            "secret_envs": secret_envs,
            "ports": [{"internal": RELAY_PORT, "external": config.relay_port, "ip": _bind_ip(address)}],
            "hostname": RELAY_HOSTNAME,
        }
        if context.name_prefix:
            args["name_prefix"] = context.name_prefix
        relayed.relays[host] = CaddyProxy(f"relay-{host}", args, opts=context.sites[host].options())
    return relayed


def _engine_key(placed: PlacedEngine, relayed: Relayed) -> tuple[str, str, pulumi.Output[str]]:
    """The route name of an engine behind a relay, the gateway env of its key, and the key (secret)."""
    server = placed.deployment.server
    route_name = relay_route_name(server.hostname)
    key_env = placed.block.gateway_key_env()
    if key_env is not None:
        return route_name, key_env, pulumi.Output.secret(server.backend_keys.apply(lambda keys, env=key_env: keys[env]))
    key_env = keyless_engine_env(server.component, server.hostname)
    # A child of the engine: it goes when the engine goes, and nothing else changes it.
    key = container.generated_secret(f"{server.hostname}-relay-key", server)
    relayed.keys[key_env] = key
    return route_name, key_env, key
