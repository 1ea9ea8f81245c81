"""The llmstack program: validated stack config -> sites, engines, gateway -> stack outputs."""

from typing import Any, Optional

import pulumi

from components.litellm import LiteLLMProxy, LiteLLMProxyArgs
from components.model_entry import LiteLLMModelEntry, models_by_route
from components.stack_ca import StackCA

from . import monitoring, webui
from .deployment import DeployContext, PlacedEngine, name_prefix_of
from .edge import deploy_edge, edge_domain, edge_url, needs_stack_ca
from .errors import StackConfigError
from .placement import placements
from .relay import deploy_relays, relay_hosts
from .schema import StackConfig
from .sites import build_sites, site_of
from .source import running_program_config
from .validation import CheckedStack, check_stack


def _flatten(groups: list[list[LiteLLMModelEntry]]) -> list[LiteLLMModelEntry]:
    return [entry for group in groups for entry in group]


def backend_keys(
    engines: list[PlacedEngine], relay_keys: Optional[dict[str, pulumi.Output[str]]] = None
) -> dict[str, pulumi.Output[str]]:
    """Gateway env -> engine key (secret), the names known from the stack: each env stays its own secret; plus the keys
    that only a relay checks (`relay_keys`)."""
    names = [engine.block.gateway_key_env() for engine in engines]
    shared = sorted({name for name in names if name and names.count(name) > 1})
    if shared:  # validation refuses such a stack; a library caller gets the same refusal
        raise ValueError(f"two engines use the key env {shared[0]}")
    keys = {
        name: pulumi.Output.secret(engine.deployment.server.backend_keys.apply(lambda keys, name=name: keys[name]))
        for name, engine in zip(names, engines)
        if name
    }
    for name, key in sorted((relay_keys or {}).items()):
        if name in keys:
            raise ValueError(f"the relay key env {name} is an engine's key env too")
        keys[name] = key
    return keys


def gateway_args(
    stack: StackConfig,
    engines: list[PlacedEngine],
    entries: pulumi.Output[list[LiteLLMModelEntry]],
    network_name: pulumi.Input[str],
    relay_keys: Optional[dict[str, pulumi.Output[str]]] = None,
) -> LiteLLMProxyArgs:
    """LiteLLMProxy args from the `llmstack:gateway` section, the engines' model entries and their keys."""
    gw = stack.gateway
    args: LiteLLMProxyArgs = {
        "network_name": network_name,
        "models": entries,
        "backend_keys": backend_keys(engines, relay_keys),
        "settings": {
            "routing_strategy": gw.routing_strategy,
            "num_retries": gw.num_retries,
            "request_timeout": gw.request_timeout,
            "fallbacks": {k: list(v) for k, v in gw.fallbacks.items()},
            "rate_limits": {
                k: {n: v for n, v in (("rpm", r.rpm), ("tpm", r.tpm)) if v is not None} for k, r in gw.rate_limits.items()
            },
            "allowed_fails": gw.allowed_fails,
            "cooldown_time": gw.cooldown_time,
            "drop_params": gw.drop_params,
            "health_check_interval": gw.health_check_interval,
            "health_check_timeout": gw.health_check_timeout,
            "health_check_routing": gw.health_check_routing,
        },
        "port": gw.port,
        "bind_address": gw.bind,
    }
    optional: dict[str, Optional[Any]] = {
        "num_workers": gw.num_workers,
        "image": gw.image,
        "postgres_image": gw.postgres_image,
        "redis_image": gw.redis_image,
    }
    args.update({k: v for k, v in optional.items() if v is not None})  # type: ignore[typeddict-item]
    if stack.master_key is not None:
        args["master_key"] = pulumi.Output.secret(stack.master_key.plaintext or "")
    args.update(monitoring.gateway_metrics_args(stack))  # type: ignore[typeddict-item]
    return args


def deploy_stack(checked: CheckedStack) -> dict[str, Any]:
    """Registers every resource of the stack and returns the stack outputs."""
    stack = checked.config
    prefix = name_prefix_of(stack, pulumi.get_stack())
    if prefix and not (prefix[0].isalnum() and prefix.isascii()):
        raise pulumi.RunError(
            f"the stack name {prefix!r} cannot start a Docker name. Fix: set llmstack:namePrefix to a name that starts with a letter or digit"
        )
    context = DeployContext(stack, build_sites(stack, prefix), checked.gpu_plan, prefix)
    for placement in placements(stack):
        context.deploy(placement)
    engines = context.placed
    site = site_of(stack, context.sites, stack.gateway.host)
    # One CA per stack signs the edge's and the relays' certificates.
    ca = StackCA("stack-ca", {}, opts=site.options()) if needs_stack_ca(stack) or relay_hosts(stack) else None
    relayed = deploy_relays(context, ca)
    entries = pulumi.Output.all(*relayed.entries).apply(_flatten)
    args = gateway_args(stack, engines, entries, site.network.name, relayed.keys)
    if prefix:
        args["name_prefix"] = prefix
    if relayed.relays:
        assert ca is not None
        args["ca_cert"] = ca.cert_pem
    if stack.edge is not None:
        # The edge publishes; the replicas answer on the network only.
        args.update({"replicas": stack.gateway.replicas, "publish": False})
    gateway = LiteLLMProxy("gateway", args, opts=site.options())
    outputs: dict[str, Any] = {}
    url = edge_url(stack.edge, edge_domain(stack.edge, site.client_address)) if stack.edge is not None else None
    outputs.update(monitoring.deploy_monitoring(context, gateway, url, relayed.monitor_keys, ca.cert_pem if ca is not None else None))
    if stack.edge is not None:
        deploy_edge(stack, site, gateway.upstreams, prefix, [*monitoring.edge_routes(stack), *webui.edge_routes(stack)], ca)
        outputs["gatewayUrl"] = pulumi.Output.from_input(url)
    else:
        outputs["gatewayUrl"] = gateway.port.apply(lambda port: f"http://{site.client_address}:{port}")
    if ca is not None:
        # What clients (tls: internal) and anyone calling a relay trust.
        outputs["caCertificate"] = ca.cert_pem
    return {
        **outputs,
        "masterKey": pulumi.Output.secret(gateway.master_key),
        "models": entries.apply(models_by_route),
        "toolModels": entries.apply(lambda es: sorted({e["model_name"] for e in es if e.get("supports_function_calling")})),
        **webui.deploy(stack, context.sites, gateway, prefix, url),
    }


def run() -> None:
    """Entry point of `__main__.py`: a config mistake stops the run with its report, before any resource."""
    try:
        checked = check_stack(running_program_config())
    except StackConfigError as error:
        raise pulumi.RunError(error.report()) from None
    for name, value in deploy_stack(checked).items():
        pulumi.export(name, value)
