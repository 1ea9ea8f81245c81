"""Where each engine runs: a block's placements, one per replica (its host, its GPUs, its names), and their checks.

A block without `replicas:` is placed once, on its `host:` with its `gpus:`, under its plain names. A block
with `replicas: [{host, gpus}, ...]` is placed once per replica; each placement is its own container and its own
LiteLLM deployment under the same model names. Names follow the replica, not its position in the list, so
removing one replica renames no other: the replica alone on the gateway's host keeps the block's plain names,
another alone on its host adds `-<host>` (`qwen3-gpu-02`), several on one host add `-<host>-gpu<ids>`.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Optional

from .errors import ConfigIssue, key_path
from .registry import SectionSpec, blocks, reserved_names
from .schema import Engine, StackConfig, resolve_host


@dataclass(frozen=True)
class Placement:
    """One engine container of the stack: its section, where the stack file declares it, and the block as placed."""

    spec: SectionSpec
    loc: tuple
    """The block's location, or its replica's (`("vllm", 0, "replicas", 1)`)."""
    block: Engine
    """The block with this placement's `host` and `gpus`; its `replica` is the suffix of its names."""
    host: str
    """The host it runs on (the name under `llmstack:hosts`; unknown names are reported by the host check)."""

    @property
    def block_loc(self) -> tuple:
        """The location of its block (the replica's loc without `replicas`, i): where the block's other keys are."""
        return self.loc[: self.loc.index("replicas")] if "replicas" in self.loc else self.loc

    @property
    def label(self) -> str:
        """How messages and the GPU plan name it: `vllm/qwen3`, `vllm/qwen3-gpu-02`, `ollama-gpu-02`."""
        base = self.spec.label(self.block)
        return f"{base}-{self.block.replica}" if self.block.replica else base

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(self.block.gpus or ())


def gateway_host(stack: StackConfig) -> str:
    """The host of the gateway (and of the edge, monitoring and web UI)."""
    return resolve_host(stack, stack.gateway.host)


def replica_suffix(host: str, gpus: Optional[list[str]], home: str, hosts_of_block: list[str]) -> str:
    """The name suffix of a replica on `host` (see the module docstring); `hosts_of_block` lists every replica's host."""
    if hosts_of_block.count(host) == 1:
        return "" if host == home else host
    return f"{host}-gpu{'-'.join(gpus or ['none'])}"


def _default_gpus(block: Engine) -> Optional[list[str]]:
    # A replica without `gpus:` gets what the block would (vLLM: all of the host's GPUs).
    return type(block).model_fields["gpus"].get_default(call_default_factory=True)


def placements_of(stack: StackConfig, spec: SectionSpec, loc: tuple, block: Engine) -> list[Placement]:
    """The placements of one block."""
    if block.replicas is None:
        return [Placement(spec, loc, block, resolve_host(stack, block.host))]
    home = gateway_host(stack)
    hosts = [resolve_host(stack, r.host) for r in block.replicas]
    placed = []
    for i, (replica, host) in enumerate(zip(block.replicas, hosts)):
        gpus = replica.gpus if replica.gpus is not None else _default_gpus(block)
        copy = block.model_copy(update={"host": host, "gpus": gpus, "replicas": None})
        copy._replica = replica_suffix(host, gpus, home, hosts)
        placed.append(Placement(spec, (*loc, "replicas", i), copy, host))
    return placed


def placements(stack: StackConfig) -> list[Placement]:
    """Every engine container of the stack, in deploy order (sections in deploy order, blocks and replicas in file order)."""
    return [p for spec, loc, block in blocks(stack) for p in placements_of(stack, spec, loc, block)]


def hosts_with_engines(stack: StackConfig) -> list[str]:
    """The hosts that run at least one engine, sorted."""
    return sorted({p.host for p in placements(stack) if p.host in stack.hosts})


def remote_hosts(stack: StackConfig) -> list[str]:
    """The hosts that run engines but not the gateway: each gets a relay."""
    home = gateway_host(stack)
    return [host for host in hosts_with_engines(stack) if host != home]


def host_locations(stack: StackConfig) -> list[tuple[tuple, Optional[str]]]:
    """Every `host:` key of the engines (a block's, or each replica's) with its value, for the host check."""
    found: list[tuple[tuple, Optional[str]]] = []
    for _, loc, block in blocks(stack):
        if block.replicas is None:
            found.append(((*loc, "host"), block.host))
        else:
            found += [((*loc, "replicas", i, "host"), r.host) for i, r in enumerate(block.replicas)]
    return found


def replica_issues(stack: StackConfig) -> Iterable[ConfigIssue]:
    """`replicas` instead of (not with) `host`/`gpus`; replicas that would share their names; engine names that clash."""
    for spec, loc, block in blocks(stack):
        if block.replicas is None:
            continue
        both = sorted({"host", "gpus"} & block.model_fields_set)
        if both:
            yield ConfigIssue(
                key_path((*loc, both[0])),
                f"`{both[0]}` is set on a block that lists replicas",
                "give each replica its own host and gpus under replicas:, and remove them from the block",
            )
        seen: dict[str, int] = {}
        for placement in placements_of(stack, spec, loc, block):
            index = placement.loc[-1]
            other = seen.setdefault(placement.block.hostname(), index)
            if other != index:
                yield ConfigIssue(
                    key_path(placement.loc),
                    f"replicas {other} and {index} both run on host {placement.host!r} with the same gpus",
                    "give each replica on one host its own gpus (or remove one of them)",
                )
    # Every placement's name is a network alias, a container name after the prefix and a resource name: a replica's
    # may not be taken by another service or engine (plain names are checked as model names), in any case.
    every = placements(stack)
    # Name -> who has it, and the block when that is a suffixed replica (replicas of one block sharing a name are
    # reported above, as the same gpus twice).
    taken: dict[str, tuple[str, Optional[tuple]]] = {name.lower(): ("another service of the stack", None) for name in reserved_names()}
    taken.update({p.block.hostname().lower(): (f"the engine at {key_path(p.loc)}", None) for p in every if not p.block.replica})
    for placement in every:
        if not placement.block.replica:
            continue
        name = placement.block.hostname()
        owner = taken.get(name.lower())
        if owner is None:
            taken[name.lower()] = (f"the replica at {key_path(placement.loc)}", placement.block_loc)
        elif owner[1] != placement.block_loc:
            yield ConfigIssue(
                key_path(placement.loc),
                f"this replica would be named {name!r}, which {owner[0]} already uses",
                "rename the model, or the host",
            )


def host_summary(stack: StackConfig, relays: Collection[str]) -> list[str]:
    """One line per host: what runs there (engines and replicas with their GPUs) and how the gateway reaches it
    (`relays`: the hosts with a relay, config.relay.relay_hosts - engine hosts and GPU-exporter-only hosts)."""
    home = gateway_host(stack)
    every = placements(stack)
    counts: dict[tuple, int] = {}
    for placed in every:
        counts[placed.block_loc] = counts.get(placed.block_loc, 0) + 1
    lines = []
    for host in sorted(stack.hosts):
        role = "gateway" if host == home else f"relay on {stack.hosts[host].client_address()}:{stack.hosts[host].relay_port}" if host in relays else "idle"
        items = []
        for placed in every:
            if placed.host != host:
                continue
            replicas = counts[placed.block_loc]
            text = placed.label
            if replicas > 1:
                text += f" (replica {placed.loc[-1] + 1} of {replicas})"
            text += f" [gpus {','.join(placed.gpus)}]" if placed.gpus else " [cpu]"
            items.append(text)
        lines.append(f"  {host} ({role}): {', '.join(items) or 'no engine'}")
    return lines
