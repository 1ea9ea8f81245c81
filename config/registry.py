"""The registry of engine sections: each module in config/sections/ registers one, and everything else derives from it.

The stack schema's fields, the keys that arrive from Pulumi as JSON, the reserved container names, the
sections that validation and the GPU plan read, the `config check` summary and the program's deploy loop
all come from here, so adding an engine is one section module (and its component), nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from pydantic import Field, create_model

from components.litellm import hostnames as gateway_hostnames
from components.litellm import replica_hostnames as gateway_replica_hostnames

from .schema import Engine, StackConfig

if TYPE_CHECKING:
    from .deployment import DeployContext, EngineDeployment
    from .errors import ConfigIssue

# Stack keys other than the engine sections whose Pulumi config value is a JSON document.
BASE_STRUCTURED_KEYS = ("hosts", "network", "gateway", "edge", "monitoring", "webui")
EDGE_HOSTNAME = "edge"
RELAY_HOSTNAME = "relay"


@dataclass(frozen=True)
class SectionSpec:
    """One engine section of the stack file, as its module declares it."""

    key: str
    """The key under `llmstack:`, e.g. `ollama`."""
    model: type[Engine]
    """The pydantic model of one block: the whole section, or one entry when `many`."""
    deploy: Callable[[Any, "DeployContext"], "EngineDeployment"]
    """Builds the engine component of one block, placed by the context."""
    many: bool = False
    """The section is a list, one engine container per entry (vLLM), instead of one block."""
    hostnames: tuple[str, ...] = ()
    """Network aliases the engine takes whatever the models are (its container's host name); no model may be named so."""
    measures_free_memory: bool = False
    """The engine sizes itself from the memory free on its GPUs when it starts (vLLM): it is deployed after the
    other sections and starts after the services sharing its GPUs; its GPU share is `gpu_memory_utilization`
    of each card (the model has `name` and `gpu_memory_utilization`), else `vram_gib` (the model has `vram_gib`)."""
    checks: tuple[Callable[[Any, tuple, StackConfig], Iterator["ConfigIssue"]], ...] = ()
    """Checks of one valid block (given with its location and the stack) that its schema cannot express."""

    def blocks(self, stack: StackConfig) -> list[tuple[tuple, Engine]]:
        """The section's blocks in the stack, each with its location: `[(("vllm", 0), entry), ...]` or `[(("ollama",), block)]`."""
        value = getattr(stack, self.key, None)
        if self.many:
            return [((self.key, i), block) for i, block in enumerate(value or [])]
        return [((self.key,), value)] if value is not None else []

    def label(self, block: Engine) -> str:
        """How messages and the GPU plan name a block: `ollama`, `vllm/qwen3`."""
        return f"{self.key}/{getattr(block, 'name')}" if self.many else self.key


_SECTIONS: dict[str, SectionSpec] = {}
_models: dict[tuple[str, ...], type[StackConfig]] = {}
_discovered = False


def register(spec: SectionSpec) -> SectionSpec:
    """Adds an engine section (called by each module of config/sections/ at import)."""
    if spec.key in _SECTIONS or spec.key in StackConfig.model_fields:
        raise ValueError(f"the stack key {spec.key!r} is already taken")
    _SECTIONS[spec.key] = spec
    return spec


def unregister(key: str) -> None:
    """Removes a registered section (for tests that register a throwaway one)."""
    _SECTIONS.pop(key, None)


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        package = importlib.import_module(".sections", __package__)
        for module in sorted(info.name for info in pkgutil.iter_modules(package.__path__)):
            importlib.import_module(f"{package.__name__}.{module}")


def sections() -> list[SectionSpec]:
    """The engine sections in deploy order: those that measure free memory last, then by key."""
    _discover()
    return sorted(_SECTIONS.values(), key=lambda spec: (spec.measures_free_memory, spec.key))


def section_keys() -> tuple[str, ...]:
    return tuple(spec.key for spec in sections())


def stack_model() -> type[StackConfig]:
    """The StackConfig model with one field per registered engine section."""
    specs = sections()
    cache_key = tuple(f"{spec.key}:{id(spec)}" for spec in specs)
    if cache_key not in _models:
        fields: dict[str, Any] = {}
        for spec in specs:
            if spec.many:
                fields[spec.key] = (list[spec.model], Field(default_factory=list))  # type: ignore[name-defined]
            else:
                fields[spec.key] = (Optional[spec.model], None)
        _models[cache_key] = create_model("StackConfig", __base__=StackConfig, **fields)
    return _models[cache_key]


def structured_keys() -> tuple[str, ...]:
    """Keys whose Pulumi config value is a JSON document (objects and lists), not a plain string."""
    return BASE_STRUCTURED_KEYS + section_keys()


def reserved_names() -> tuple[str, ...]:
    """Network aliases of the stack's services (gateway and engines); a model may not take one (it becomes an alias too)."""
    # The gateway, its replicas, the edge and the relays take these aliases on the stack's network.
    names = [*gateway_hostnames(), *gateway_replica_hostnames(), EDGE_HOSTNAME, RELAY_HOSTNAME]
    for spec in sections():
        names += spec.hostnames
    return tuple(names)


def blocks(stack: StackConfig) -> list[tuple[SectionSpec, tuple, Engine]]:
    """Every engine block of the stack, in deploy order, with its section and location."""
    return [(spec, loc, block) for spec in sections() for loc, block in spec.blocks(stack)]


def model_locations(stack: StackConfig) -> list[tuple[str, tuple]]:
    """Every model name in the stack with the location that declares it, in the stack file's order."""
    specs = {spec.key: spec for spec in sections()}
    found = []
    for key in stack.in_file_order(list(specs)):
        for loc, block in specs[key].blocks(stack):
            found += [(name, (*loc, *where)) for name, where in block.model_names()]
    return found
