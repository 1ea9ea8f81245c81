"""The `llmstack:webui` key: which of the stack's models Open WebUI uses for each feature, its checks, and its deployment."""

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional, Union

import pulumi

from components.gateway_key import GatewayKey
from components.litellm import LiteLLMProxy
from components.model_entry import ROUTE_MODES
from components.caddy import ExtraRoute
from components.webui import HOSTNAME, OpenWebUI, OpenWebUIArgs
from components.webui import PORT as WEBUI_PORT

from . import registry
from .errors import ConfigIssue, key_path
from .schema import StackConfig, WebUI, resolve_host
from .sites import Site

KEY = "webui"
KEY_ALIAS = "open-webui"
CHAT = "chat"
# Each feature of Open WebUI: its key under llmstack:webui, the gateway route it calls, what it does.
FEATURES: dict[str, tuple[str, str]] = {
    "default_model": (CHAT, "the chat model new chats start with"),
    "embedding_model": ("embedding", "document search (embeddings)"),
    "reranking_model": ("rerank", "reranking of document search results"),
    "transcription_model": ("transcription", "speech to text"),
    "speech_model": ("speech", "text to speech"),
}
# A route's mode as a stack file writes it (`mode:` of Infinity and Speaches models), and LiteLLM's.
_ROUTE_OF_MODE = {**{route: route for route in ROUTE_MODES}, **{mode: route for route, mode in ROUTE_MODES.items()}}


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def models_by_route(stack: StackConfig) -> dict[str, list[str]]:
    """Route -> the stack's model names on it, in the stack file's order (a model without `mode` is a chat model)."""
    routes: dict[str, list[str]] = {route: [] for route in ROUTE_MODES}
    for name, loc in registry.model_locations(stack):
        entry: Any = stack
        for part in loc[:-1]:
            entry = entry[part] if isinstance(part, int) else getattr(entry, part)
        route = _ROUTE_OF_MODE.get(str(getattr(entry, "mode", CHAT)), CHAT)
        if name not in routes[route]:
            routes[route].append(name)
    return routes


@dataclass(frozen=True)
class WebUIModels:
    """The model each feature uses (None: the feature is off), and why a feature is off."""

    chosen: dict[str, Optional[str]]
    off: tuple[str, ...]
    """One phrase per feature that is off, e.g. `reranking off (the stack has no rerank model)`."""

    def get(self, field: str) -> Optional[str]:
        return self.chosen.get(field)


def resolve(section: WebUI, routes: dict[str, list[str]]) -> tuple[WebUIModels, list[ConfigIssue]]:
    """Each feature's model: the one named, else the stack's first on its route; off when `false` or the route is empty."""
    chosen: dict[str, Optional[str]] = {}
    off: list[str] = []
    issues: list[ConfigIssue] = []
    everything = [name for names in routes.values() for name in names]
    for field, (route, purpose) in FEATURES.items():
        given: Union[str, bool, None] = getattr(section, field)
        loc = (KEY, _camel(field))
        on_route = routes[route]
        if given is False:
            chosen[field] = None
            off.append(f"{purpose} off ({key_path(loc)} is false)")
        elif given is None:
            chosen[field] = on_route[0] if on_route else None
            if not on_route:
                off.append(f"{purpose} off (the stack has no {route} model)")
        elif given in on_route:
            chosen[field] = str(given)
        else:
            chosen[field] = None
            other = next((r for r, names in routes.items() if given in names), None)
            if other is not None:
                message = f"{given!r} is {_a(other)} model, not {_a(route)} model"
            else:
                close = difflib.get_close_matches(str(given), everything, n=1)
                message = f"unknown model {given!r}" + (f" (did you mean `{close[0]}`?)" if close else "")
            fix = (
                f"name one of the stack's {route} models: {', '.join(on_route)}"
                if on_route
                else f"add a {route} model to the stack, or write false to turn {purpose} off"
            )
            issues.append(ConfigIssue(key_path(loc), message, fix))
    if chosen["default_model"] is None and section.default_model is None:
        issues.append(
            ConfigIssue(
                key_path((KEY,)),
                "the stack serves no chat model, and Open WebUI is a chat app",
                "add a chat model (llmstack:vllm or llmstack:ollama), or remove llmstack:webui",
            )
        )
    if chosen["reranking_model"] and not chosen["embedding_model"]:
        issues.append(
            ConfigIssue(
                key_path((KEY, "rerankingModel")),
                "reranking reorders document search results, and document search is off (no embedding model)",
                "add an embedding model to the stack, or write rerankingModel: false",
            )
        )
    if section.speech_voice is not None and not chosen["speech_model"]:
        issues.append(
            ConfigIssue(key_path((KEY, "speechVoice")), "a voice is set but text to speech is off", "remove speechVoice")
        )
    return WebUIModels(chosen, tuple(off)), issues


def webui_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    """Mistakes of `llmstack:webui` against the stack's models and ports (a check of config/validation.py)."""
    if stack.webui is None:
        return []
    _, issues = resolve(stack.webui, models_by_route(stack))
    for name, loc in registry.model_locations(stack):
        if name.lower() == HOSTNAME:
            issues.append(
                ConfigIssue(
                    key_path(loc),
                    f"{name!r} is the web UI's name on the stack's network",
                    f"choose another model name ({HOSTNAME} is taken by llmstack:webui)",
                )
            )
    if stack.webui.port == stack.gateway.port:
        issues.append(
            ConfigIssue(
                key_path((KEY, "port")),
                f"port {stack.webui.port} is the gateway's port on the same host",
                "choose another port, e.g. 3000",
            )
        )
    return issues


def summary(stack: StackConfig) -> Optional[str]:
    """The `config check` phrase for the web UI: where it listens and which features are off."""
    if stack.webui is None:
        return None
    models, _ = resolve(stack.webui, models_by_route(stack))
    text = f"webui on 127.0.0.1:{stack.webui.port}" if stack.edge is None else f"webui through the edge on port {stack.webui.port}"
    return text + (f" ({'; '.join(models.off)})" if models.off else " (chat, documents, reranking, voice)")


def key_models(models: WebUIModels, routes: dict[str, list[str]]) -> list[str]:
    """What Open WebUI's gateway key may call: every chat model (users pick any), and each feature's model."""
    names = set(routes[CHAT]) | {name for name in models.chosen.values() if name}
    return sorted(names)


def webui_args(
    section: WebUI, models: WebUIModels, network_name: pulumi.Input[str], gateway_url: str, api_key: pulumi.Input[str]
) -> OpenWebUIArgs:
    """OpenWebUI args: the gateway, the key, each feature's model, the published port."""
    args: OpenWebUIArgs = {
        "network_name": network_name,
        "gateway_url": gateway_url,
        "api_key": api_key,
        "embedding_batch_size": section.embedding_batch_size,
        "bind_port": section.port,
        "bind_address": "127.0.0.1",
    }
    for field in FEATURES:
        name = models.get(field)
        if name:
            args[field] = name  # type: ignore[literal-required]
    optional = {"speech_voice": section.speech_voice, "url": section.url, "image": section.image}
    args.update({k: v for k, v in optional.items() if v is not None})  # type: ignore[typeddict-item]
    return args


def edge_routes(stack: StackConfig) -> list[ExtraRoute]:
    """With an edge, Open WebUI is served through it on its own HTTPS port (it wants the root path)."""
    if stack.webui is None or stack.edge is None:
        return []
    return [{"port": stack.webui.port, "upstream": f"{HOSTNAME}:{WEBUI_PORT}"}]


def deploy(
    stack: StackConfig, sites: dict[str, Site], gateway: LiteLLMProxy, name_prefix: str = "", edge_url: Optional[str] = None
) -> dict[str, Any]:
    """Open WebUI beside the gateway with its own gateway key; the stack outputs it adds (none without `llmstack:webui`).

    With an edge (`edge_url`, e.g. `https://gpu-01`), it is served through the edge on `port`; else on the loopback."""
    section = stack.webui
    if section is None:
        return {}
    routes = models_by_route(stack)
    models, _ = resolve(section, routes)
    host_name = resolve_host(stack, stack.gateway.host)
    site, host = sites[host_name], stack.hosts[host_name]
    key = GatewayKey(
        "webui-gateway-key",
        {
            "docker_host": host.docker,
            "ssh_opts": list(host.ssh_opts),
            "container_id": gateway.container.id,
            "alias": KEY_ALIAS,
            "models": key_models(models, routes),
        },
        opts=pulumi.ResourceOptions(depends_on=[gateway.container]),
    )
    # The gateway by its network alias: the Docker name may carry a stack prefix, the alias does not.
    gateway_url = gateway.internal_url.apply(lambda url: f"{url}/v1")
    args = webui_args(section, models, site.network.name, gateway_url, key.key)  # type: ignore[arg-type]
    if name_prefix:
        args["name_prefix"] = name_prefix
    url = f"http://127.0.0.1:{section.port}"
    if edge_url is not None:
        # The edge publishes it; the container publishes nothing.
        args.pop("bind_port", None)
        args.pop("bind_address", None)
        url = f"{edge_url}:{section.port}"
        args.setdefault("url", url)
    webui = OpenWebUI("webui", args, opts=site.options(depends_on=[key.registration]))
    # Without an edge: on the Docker host's loopback only (the URL works on that host, or through an ssh tunnel).
    return {"webuiUrl": webui.internal_url.apply(lambda _: url)}
