"""The LiteLLM model entry: what an engine tells the gateway about each model it serves."""

from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict


__all__ = ["LiteLLMModelEntry", "ROUTE_MODES", "models_by_route"]

# The routes llmstack serves through its gateway (the keys of the `models` stack output and the route
# names a stack file uses), each with LiteLLM's `model_info.mode` for it. The one home of this table.
ROUTE_MODES: dict[str, str] = {
    "chat": "chat",
    "embedding": "embedding",
    "rerank": "rerank",
    "transcription": "audio_transcription",
    "speech": "audio_speech",
}
MODES: tuple[str, ...] = tuple(ROUTE_MODES.values())


class LiteLLMModelEntry(TypedDict):
    """One deployment in LiteLLM's `model_list`; it carries no secret, only the name of the env var holding the key."""

    model_name: str
    """The name clients send in `model` (unique across the stack)."""
    model: str
    """LiteLLM's provider-prefixed model, e.g. `hosted_vllm/qwen3` or `infinity/BAAI/bge-reranker-v2-m3`."""
    api_base: str
    """Where the gateway reaches the engine, e.g. `http://qwen3:8000/v1`."""
    mode: str
    """`chat`, `embedding`, `rerank`, `audio_transcription` or `audio_speech`."""
    api_key_env: NotRequired[str]
    """Name of the gateway env var holding the engine's key; the config says `os.environ/<name>`."""
    max_tokens: NotRequired[int]
    """Largest completion the model accepts (LiteLLM `model_info.max_tokens`)."""
    supports_function_calling: NotRequired[bool]
    """True when the engine parses tool calls for this model."""


def key_env_name(engine: str, name: str) -> str:
    """The gateway env var that holds an engine instance's API key, e.g. `VLLM_QWEN3_API_KEY`."""
    token = "".join(ch if ch.isalnum() else "_" for ch in name).upper()
    return f"{engine.upper()}_{token}_API_KEY" if token else f"{engine.upper()}_API_KEY"


def require_unique_names(component: str, models: Sequence[Mapping[str, object]]) -> None:
    """An engine serves at least one model, and each under its own name."""
    names = [str(m["name"]) for m in models]
    if not names:
        raise ValueError(f"{component} needs at least one model")
    if len(set(names)) != len(names):
        raise ValueError(f"{component}: model names must be unique: {sorted(names)}")


def engine_entries(
    models: Sequence[Mapping[str, str]], *, prefix: str, api_base: str, key_env: str, modes: Sequence[str]
) -> list[LiteLLMModelEntry]:
    """One entry per model (`name`, `model`, `mode`) behind one keyed endpoint, sorted by name."""
    entries: list[LiteLLMModelEntry] = []
    for m in sorted(models, key=lambda m: m["name"]):
        if m["mode"] not in modes:
            raise ValueError(f"model {m['name']!r}: mode {m['mode']!r} is not one of {tuple(modes)}")
        entries.append(
            {"model_name": m["name"], "model": prefix + m["model"], "api_base": api_base, "mode": m["mode"], "api_key_env": key_env}
        )
    return entries


def models_by_route(entries: Sequence[LiteLLMModelEntry]) -> dict[str, list[str]]:
    """Route -> the sorted model names served on it (a name with several deployments counts once)."""
    return {route: sorted({e["model_name"] for e in entries if e["mode"] == mode}) for route, mode in ROUTE_MODES.items()}
