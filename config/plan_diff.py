"""Compares two plans resource by resource and classifies each change as pulumi-docker would carry it out.

The rules follow the providers' schemas (docs/engine-facts.md): almost every container input forces a
replacement; `restart` and resource limits update in place; `healthcheck`, `wait` and `wait_timeout`
are in-place no-ops unless `replace_on_changes` names them. A replaced resource gets a new id, so
every input that refers to that id changes too, and the rule of that input decides again.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .plan import Plan, RecordedResource, mock_id, reveal

CREATE, REPLACE, UPDATE, DELETE, SAME = "create", "replace", "update", "delete", "same"

# Inputs that change without replacing the resource, per resource type.
IN_PLACE: dict[str, frozenset[str]] = {
    "docker:index/container:Container": frozenset(
        {
            "restart", "maxRetryCount", "memory", "memorySwap", "cpuShares",
            "healthcheck", "wait", "waitTimeout", "mustRun", "destroyGraceSeconds",
            "containerReadRefreshTimeoutMilliseconds",
        }
    ),
    "docker:index/remoteImage:RemoteImage": frozenset({"keepLocally", "forceRemove"}),
    # pulumi-command re-runs `create` (or `update`) when these change; only `triggers` replaces.
    "command:local:Command": frozenset({"create", "update", "delete", "environment", "dir", "interpreter", "stdin", "logging"}),
    "pulumi:providers:docker": frozenset({"host", "sshOpts", "certPath", "caMaterial", "certMaterial", "keyMaterial", "registryAuth"}),
}
# Component resources only group children: a change to them alone is no change.
_COMPONENT_PREFIX = "llmstack:index:"


@dataclass(frozen=True)
class Change:
    """What happens to one resource when the stack goes from plan A to plan B."""

    type: str
    name: str
    action: str
    keys: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        keys = f" ({', '.join(self.keys)})" if self.keys else ""
        return f"{self.action:8} {self.type} {self.name}{keys}"


def _key(resource: RecordedResource) -> tuple[str, str]:
    return resource.type, resource.name


def _resource_id(resource: RecordedResource) -> str:
    return resource.id or mock_id(resource.type, resource.name, resource.inputs)


def _mentions(value: Any, text: str) -> bool:
    """True where `text` (an id) stands in `value` as a whole word, e.g. in `docker exec <id> ...`."""
    if isinstance(value, str):
        return re.search(rf"(?<![\w.-]){re.escape(text)}(?![\w.-])", value) is not None
    if isinstance(value, dict):
        return any(_mentions(v, text) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, text) for v in value)
    return False


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    return {k for k in set(old) | set(new) if old.get(k) != new.get(k)}


def _action(resource: RecordedResource, keys: Iterable[str]) -> str:
    keys = set(keys)
    if not keys or resource.type.startswith(_COMPONENT_PREFIX):
        return SAME
    in_place = IN_PLACE.get(resource.type, frozenset()) - set(resource.replace_on_changes)
    return UPDATE if keys <= in_place else REPLACE


def diff_plans(before: Plan, after: Plan) -> list[Change]:
    """Every resource of either plan with what happens to it, sorted by type and name."""
    old = {_key(r): r for r in before.resources}
    new = {_key(r): r for r in after.resources}
    keys = {k: _changed_keys(reveal(old[k].inputs), reveal(new[k].inputs)) for k in old.keys() & new.keys()}
    replaced: set[tuple[str, str]] = set()
    while True:
        found = {k for k in keys if k not in replaced and _action(new[k], keys[k]) == REPLACE}
        if not found:
            break
        replaced |= found
        for gone in found:
            ref = _resource_id(new[gone])
            for k in keys:
                if k in replaced:
                    continue
                keys[k] |= {name for name, value in reveal(new[k].inputs).items() if _mentions(value, ref)}
    changes = [Change(t, n, CREATE) for (t, n) in new.keys() - old.keys()]
    changes += [Change(t, n, DELETE) for (t, n) in old.keys() - new.keys()]
    changes += [Change(k[0], k[1], _action(new[k], keys[k]), tuple(sorted(keys[k]))) for k in keys]
    return sorted(changes, key=lambda c: (c.type, c.name))


def effective(changes: Iterable[Change]) -> list[Change]:
    """The changes that do something (everything but `same`)."""
    return [c for c in changes if c.action != SAME]
