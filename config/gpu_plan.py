"""The GPU memory plan: what every GPU service may take on each card, checked against the hosts' inventories.

Rules (a host's inventory is `llmstack:hosts.<host>.gpus: [{id, memoryGiB}]`):
- A service's share of each of its GPUs: Ollama, Infinity and Speaches take `vramGiB`; vLLM takes
  `gpuMemoryUtilization` x the card's memory (vLLM's default 0.92 when unset). Every service also pays
  CUDA_CONTEXT_MARGIN_GIB per GPU for what its process holds outside that share (see below).
- On every listed GPU the shares plus the margins must fit in `memoryGiB`; otherwise the stack is refused
  (by `config check` and by the program before it registers any resource), naming the host, the GPU, each
  service with its share, and the largest gpuMemoryUtilization that would fit.
- `gpuMemoryUtilization: auto` takes what the other services leave on each of vLLM's GPUs, less the
  margins (the other services' and vLLM's own), as a fraction of the card; the smallest over its GPUs,
  rounded down to 2 decimals. It needs an inventory.
- `gpus: all` means every GPU of the inventory; an id the inventory does not list is an error.
- On a host with an inventory, a GPU service must set `vramGiB`; `vramGiB` on a CPU service is an error.
- A host without an inventory is allowed: nothing on it is checked, and the plan says so.
- Two vLLM servers may not share a GPU: each would measure the other's memory as used while both start,
  and `auto` could not split a card between them. Give each its own device ids.
- vLLM starts after the other services that share any of its GPUs (wired by the program, see
  config/deployment.py): it measures free memory when it starts and refuses to start when less than
  its share is free.

The margin: 1 GiB per service per GPU. A CUDA context plus the cuBLAS/cuDNN/NCCL workspaces of a
process take ~0.5-1 GiB of a device outside what the process reports as its own use. vLLM pays it too:
its fraction covers what it allocates once running, but at start it compares the memory that is free
after its own CUDA context exists with fraction x card, so its context sits outside the fraction. We
take the top of the range because the plan is checked before anything runs: over-estimating costs ~1 %
of an 80 GiB card per service, under-estimating costs a vLLM that refuses to start. The margin is per
container; Ollama starts one runner process per loaded model, so its `vramGiB` should cover the extra
runners (or set OLLAMA_MAX_LOADED_MODELS=1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from .placement import placements
from .errors import ConfigIssue, key_path
from .schema import Host, StackConfig

CUDA_CONTEXT_MARGIN_GIB = 1.0
VLLM_DEFAULT_UTILIZATION = 0.92  # vLLM's own default for --gpu-memory-utilization
AUTO = "auto"
ALL = "all"
_EPSILON = 1e-9


@dataclass(frozen=True)
class GpuService:
    """A service placed on GPUs: an engine section, or one vLLM entry."""

    label: str  # `ollama`, `vllm/qwen3`
    host: str
    gpus: tuple[str, ...]  # as written: device ids, or ("all",)
    loc: tuple[str | int, ...]  # where the stack file places it: ("ollama",), ("vllm", 0) or ("vllm", 0, "replicas", 1)
    block_loc: tuple[str | int, ...]  # its block: ("vllm", 0) for every replica of that entry
    vram_gib: Optional[float] = None  # engines
    utilization: float | str | None = None  # vLLM: a fraction, "auto", or None (vLLM's default)
    vllm_name: Optional[str] = None  # set for a service sized as a fraction of the card (a vLLM entry's name)

    def key(self, name: str) -> str:
        """The stack key of one of its settings; a replica has only its `host` and `gpus`, the rest is its block's."""
        return key_path((*(self.loc if name in ("host", "gpus") else self.block_loc), name))


@dataclass(frozen=True)
class GpuRow:
    """One line of the plan: a service's reservation on one GPU, and what the card has left after it."""

    host: str
    gpu: str
    service: Optional[str]  # None: nothing runs on this GPU
    reserved_gib: Optional[float]  # share + margin; None when unknown (unchecked host)
    free_gib: Optional[float]  # left once this service and those above it on this GPU hold their reservations

    def document(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "gpu": self.gpu,
            "service": self.service,
            "reservedGiB": self.reserved_gib,
            "freeGiB": self.free_gib,
        }


@dataclass(frozen=True)
class GpuPlan:
    """The per-GPU plan of a stack: rows, the vLLM utilizations to deploy, which hosts were checked, and the mistakes."""

    rows: list[GpuRow]
    utilizations: dict[str, Optional[float]]  # vLLM name -> --gpu-memory-utilization (None: vLLM's default)
    checked: dict[str, bool]  # host -> whether it has an inventory to check against
    issues: list[ConfigIssue]

    def document(self) -> dict[str, Any]:
        """The `gpuPlan` key of `config render`."""
        return {
            "checked": dict(sorted(self.checked.items())),
            "rows": [row.document() for row in self.rows],
            "marginGiB": CUDA_CONTEXT_MARGIN_GIB,
            "vllmGpuMemoryUtilization": dict(self.utilizations),
        }

    def notes(self) -> list[str]:
        """One line per host whose GPU services were not checked."""
        hosts = sorted({row.host for row in self.rows if not self.checked.get(row.host, False)})
        return [f"{host}: GPU fit not checked (no GPU inventory under llmstack:hosts.{host}.gpus)" for host in hosts]

    def table(self) -> str:
        """The plan for people: one line per service and GPU."""
        header = ("host", "gpu", "service", "reserved GiB", "free GiB")
        lines = [
            (r.host, r.gpu, r.service or "-", _number(r.reserved_gib), _number(r.free_gib))
            for r in self.rows
        ]
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
        text = [f"GPU plan (reserved = share + {_gib(CUDA_CONTEXT_MARGIN_GIB)} GiB CUDA context per service and GPU):"]
        text += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip() for cells in [header, *lines]]
        if not self.rows:
            text.append("  (no service runs on a GPU)")
        text += [f"  {note}" for note in self.notes()]
        return "\n".join(text)


def _gib(value: float) -> str:
    return f"{round(value, 2):g}"


def _number(value: Optional[float]) -> str:
    return "?" if value is None else _gib(value)


def floor_fraction(value: float) -> float:
    """A fraction rounded down to 2 decimals (the epsilon keeps 0.83 from becoming 0.82)."""
    return math.floor(value * 100 + _EPSILON) / 100


def gpu_services(stack: StackConfig) -> list[GpuService]:
    """Every service that runs on GPUs, in start order (the sections in deploy order, each in file order).

    A service whose host cannot be resolved is left out: the host check reports it."""
    services = []
    for placed in placements(stack):
        block, host, loc = placed.block, placed.host, placed.loc
        if not block.gpus or (block.host is None and len(stack.hosts) > 1):
            continue
        if host not in stack.hosts:
            continue
        if placed.spec.measures_free_memory:
            # Each replica is sized for its own GPUs: the plan's utilizations are keyed by its network alias.
            name = block.hostname()
            utilization = getattr(block, "gpu_memory_utilization")
            services.append(GpuService(placed.label, host, tuple(block.gpus), loc, placed.block_loc, utilization=utilization, vllm_name=name))
        else:
            services.append(GpuService(placed.label, host, tuple(block.gpus), loc, placed.block_loc, vram_gib=getattr(block, "vram_gib")))
    return services


def device_ids(gpus: Sequence[str], host: Host) -> list[str]:
    """The inventory ids a selection names on a host (`all` expanded; `["all"]` stays when there is no inventory)."""
    if host.gpus is None:
        return list(gpus)
    if ALL in gpus:
        return [g.id for g in host.gpus]
    return list(gpus)


def shares_a_gpu(host: Host, a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two selections on one host overlap; without an inventory `all` overlaps everything."""
    if not a or not b:
        return False
    if host.gpus is None and (ALL in a or ALL in b):
        return True
    return bool(set(device_ids(a, host)) & set(device_ids(b, host)))


def _placement_issues(stack: StackConfig, services: list[GpuService]) -> list[ConfigIssue]:
    issues = []
    for placed in placements(stack):
        block, loc = placed.block, placed.loc
        if not placed.spec.measures_free_memory and not block.gpus and getattr(block, "vram_gib", None) is not None:
            issue = ConfigIssue(key_path((*placed.block_loc, "vramGiB")), "vramGiB is set but the service runs on CPU (no gpus)", "add gpus: (all or device ids), or remove vramGiB")
            if issue not in issues:
                issues.append(issue)
    for service in services:
        host = stack.hosts[service.host]
        if host.gpus is None:
            if service.utilization == AUTO:
                issues.append(
                    ConfigIssue(
                        service.key("gpuMemoryUtilization"),
                        f"auto needs the GPU inventory of host {service.host!r}, which lists none",
                        f'list its GPUs under llmstack:hosts.{service.host}.gpus (e.g. - {{id: "0", memoryGiB: 80}}), or write a fraction such as 0.85',
                    )
                )
            continue
        listed = [g.id for g in host.gpus]
        where = f"the ids listed under llmstack:hosts.{service.host}.gpus: {', '.join(listed)}" if listed else f"list the GPUs under llmstack:hosts.{service.host}.gpus, or remove gpus: to run on CPU"
        if ALL in service.gpus and not listed:
            issues.append(ConfigIssue(service.key("gpus"), f"`all` selects no GPU: host {service.host!r} lists none", where))
        for gpu in service.gpus:
            if gpu != ALL and gpu not in listed:
                issues.append(ConfigIssue(service.key("gpus"), f"GPU {gpu!r} is not in the inventory of host {service.host!r}", f"use {where}"))
        if service.vllm_name is None and service.vram_gib is None:
            issues.append(
                ConfigIssue(
                    service.key("vramGiB"),
                    f"{service.label} runs on GPUs of host {service.host!r}, which lists its GPU inventory, but sets no vramGiB",
                    "add vramGiB: the GiB it may take on each of its GPUs (e.g. 8), so the fit can be checked",
                )
            )
    vllms = [s for s in services if s.vllm_name is not None]
    for later_index, later in enumerate(vllms):
        for earlier in vllms[:later_index]:
            host = stack.hosts[later.host]
            if earlier.host == later.host and shares_a_gpu(host, earlier.gpus, later.gpus):
                shared = sorted(set(device_ids(earlier.gpus, host)) & set(device_ids(later.gpus, host))) or [ALL]
                issues.append(
                    ConfigIssue(
                        later.key("gpus"),
                        f"shares GPU {', '.join(shared)} of host {later.host!r} with {earlier.label} ({key_path(earlier.loc)}); "
                        "two vLLM servers on one GPU would each count the other's memory as used while they start",
                        "give each vLLM entry its own device ids (gpus: [...]), or serve the smaller model with Ollama",
                    )
                )
    return issues


class _HostPlan:
    """The arithmetic of one host with an inventory."""

    def __init__(self, name: str, host: Host, services: list[GpuService]) -> None:
        self.name = name
        self.memory = {g.id: g.memory_gib for g in host.gpus or []}
        self.order = [g.id for g in host.gpus or []]
        self.on_gpu = {
            gpu: [s for s in services if gpu in device_ids(s.gpus, host)] for gpu in self.order
        }
        self.gpus_of = {s: [gpu for gpu in device_ids(s.gpus, host) if gpu in self.memory] for s in services}
        self.auto: dict[GpuService, Optional[float]] = {}

    def utilization(self, service: GpuService) -> Optional[float]:
        if service.utilization == AUTO:
            return self.auto.get(service)
        return VLLM_DEFAULT_UTILIZATION if service.utilization is None else float(service.utilization)

    def share(self, service: GpuService, gpu: str) -> Optional[float]:
        """GiB the service takes on this GPU besides the margin; None when unknown."""
        if service.vllm_name is None:
            return service.vram_gib
        utilization = self.utilization(service)
        return None if utilization is None else utilization * self.memory[gpu]

    def others(self, service: GpuService, gpu: str) -> float:
        """GiB the other services on this GPU reserve, margins included (unknown shares count 0: reported elsewhere)."""
        return sum((self.share(o, gpu) or 0.0) + CUDA_CONTEXT_MARGIN_GIB for o in self.on_gpu[gpu] if o != service)

    def largest_fit(self, service: GpuService) -> Optional[float]:
        """The largest gpuMemoryUtilization that fits on every GPU of this vLLM (may be <= 0)."""
        rooms = [(self.memory[g] - self.others(service, g) - CUDA_CONTEXT_MARGIN_GIB) / self.memory[g] for g in self.gpus_of[service]]
        return floor_fraction(min(rooms)) if rooms else None

    def size_auto(self) -> list[ConfigIssue]:
        issues = []
        for service in self.gpus_of:
            if service.utilization != AUTO:
                continue
            largest = self.largest_fit(service)
            if largest is not None and largest >= 0.01:
                self.auto[service] = largest
            elif largest is not None:
                tightest = min(self.gpus_of[service], key=lambda g: (self.memory[g] - self.others(service, g)) / self.memory[g])
                issues.append(
                    ConfigIssue(
                        service.key("gpuMemoryUtilization"),
                        f"auto leaves {service.label} nothing on GPU {tightest!r} of host {self.name!r}: the other services reserve "
                        f"{_gib(self.others(service, tightest))} GiB of {_gib(self.memory[tightest])} GiB "
                        f"(with {_gib(CUDA_CONTEXT_MARGIN_GIB)} GiB CUDA context each, and as much for vLLM)",
                        "lower the other services' vramGiB, or move them or vLLM to other GPUs",
                    )
                )
        return issues

    def fit_issue(self, gpu: str, index: int) -> Optional[ConfigIssue]:
        services = self.on_gpu[gpu]
        shares = [self.share(s, gpu) for s in services]
        if any(share is None for share in shares):
            return None  # a missing vramGiB or an impossible auto is reported on its own
        memory = self.memory[gpu]
        total = sum(shares) + CUDA_CONTEXT_MARGIN_GIB * len(services)  # type: ignore[arg-type]
        if total <= memory + _EPSILON:
            return None
        parts = [f"{s.label} {_gib(share)} GiB ({self._budget(s)})" for s, share in zip(services, shares)]  # type: ignore[arg-type]
        message = (
            f"GPU {gpu!r} of host {self.name!r} is over-committed: {_gib(total)} GiB reserved of {_gib(memory)} GiB: "
            f"{', '.join(parts)}, plus {_gib(CUDA_CONTEXT_MARGIN_GIB)} GiB CUDA context for each of the {len(services)} service(s)"
        )
        vllms = [s for s in services if s.vllm_name is not None]
        fixes = []
        fits: dict[str, Optional[float]] = {}  # replicas of one entry share its key: the smallest fit holds for all
        for v in vllms:
            largest = self.largest_fit(v)
            key = v.key("gpuMemoryUtilization")
            fits[key] = largest if key not in fits or largest is None or fits[key] is None else min(largest, fits[key])  # type: ignore[type-var]
        labels = {v.key("gpuMemoryUtilization"): v.label for v in vllms}
        for key, largest in fits.items():
            if largest is not None and largest >= 0.01:
                fixes.append(f"set {key} to {largest:.2f} or less (the largest that fits), or to auto")
            else:
                fixes.append(f"no gpuMemoryUtilization of {labels[key]} fits beside the others")
        engines = [s.label for s in services if s.vllm_name is None]
        if engines:
            fixes.append(f"lower the vramGiB of {', '.join(engines)}")
        fixes.append("or move a service to another GPU")
        path = vllms[0].key("gpuMemoryUtilization") if vllms else key_path(("hosts", self.name, "gpus", index))
        return ConfigIssue(path, message, "; ".join(fixes))

    def _budget(self, service: GpuService) -> str:
        if service.vllm_name is None:
            return "vramGiB"
        if service.utilization is None:
            return f"gpuMemoryUtilization {VLLM_DEFAULT_UTILIZATION:g}, the vLLM default"
        return f"gpuMemoryUtilization {self.utilization(service):g}"

    def rows(self) -> list[GpuRow]:
        rows = []
        for gpu in self.order:
            free: Optional[float] = self.memory[gpu]
            if not self.on_gpu[gpu]:
                rows.append(GpuRow(self.name, gpu, None, 0.0, round(self.memory[gpu], 2)))
            for service in self.on_gpu[gpu]:
                share = self.share(service, gpu)
                reserved = None if share is None else share + CUDA_CONTEXT_MARGIN_GIB
                free = None if free is None or reserved is None else free - reserved
                rows.append(GpuRow(self.name, gpu, service.label, _rounded(reserved), _rounded(free)))
        return rows


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)


def _unchecked_rows(name: str, services: list[GpuService]) -> list[GpuRow]:
    rows = []
    for service in services:
        reserved = None if service.vram_gib is None else service.vram_gib + CUDA_CONTEXT_MARGIN_GIB
        rows += [GpuRow(name, gpu, service.label, _rounded(reserved), None) for gpu in service.gpus]
    return rows


def plan(stack: StackConfig) -> GpuPlan:
    """The GPU plan of a validated stack config."""
    services = gpu_services(stack)
    issues = _placement_issues(stack, services)
    # Keyed by each vLLM container's network alias: every replica is sized for its own GPUs.
    utilizations: dict[str, Optional[float]] = {}
    for placed in placements(stack):
        if placed.spec.measures_free_memory:
            value = getattr(placed.block, "gpu_memory_utilization")
            utilizations[placed.block.hostname()] = value if isinstance(value, float) else None
    rows: list[GpuRow] = []
    for name, host in sorted(stack.hosts.items()):
        on_host = [s for s in services if s.host == name]
        if host.gpus is None:
            rows += _unchecked_rows(name, on_host)
            continue
        host_plan = _HostPlan(name, host, on_host)
        issues += host_plan.size_auto()
        for service, value in host_plan.auto.items():
            utilizations[service.vllm_name or ""] = value
        for index, gpu in enumerate(host_plan.order):
            issue = host_plan.fit_issue(gpu, index)
            if issue is not None:
                issues.append(issue)
        rows += host_plan.rows()
    checked = {name: host.gpus is not None for name, host in stack.hosts.items()}
    return GpuPlan(rows, utilizations, checked, issues)
