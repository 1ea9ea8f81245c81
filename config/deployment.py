"""What every section's `deploy` gets (the context: sites, GPU plan, what already runs) and gives back (the engine placed)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from components.engine import EngineServer

from .gpu_plan import GpuPlan, shares_a_gpu
from .placement import Placement
from .schema import Engine, StackConfig, resolve_host
from .sites import Site


def name_prefix_of(stack: StackConfig, stack_name: str) -> str:
    """The Docker name prefix: `llmstack:namePrefix` when set (`""`: none), else the Pulumi stack's name."""
    return stack.name_prefix if stack.name_prefix is not None else stack_name


@dataclass(frozen=True)
class EngineDeployment:
    """One deployed engine: its component (where it runs is its placement's, see PlacedEngine)."""

    server: EngineServer


@dataclass(frozen=True)
class PlacedEngine:
    """A deployed engine with the placement it was deployed for (its section, block, host and GPUs)."""

    placement: Placement
    deployment: EngineDeployment

    @property
    def engine(self) -> str:
        """Its section's key (`vllm`, `infinity`)."""
        return self.placement.spec.key

    @property
    def block(self) -> Engine:
        return self.placement.block

    @property
    def server(self) -> str:
        """The `model` label of its target: the model for a container per model (vLLM), else the section (`infinity`)."""
        return str(getattr(self.block, "name")) if self.placement.spec.many else self.placement.spec.key


@dataclass
class DeployContext:
    """The stack being deployed: its validated config, its sites, its GPU plan, and the engines deployed so far."""

    stack: StackConfig
    sites: dict[str, Site]
    gpu_plan: GpuPlan
    name_prefix: str = ""
    """Prefix of every Docker name (see name_prefix_of)."""
    placed: list[PlacedEngine] = field(default_factory=list)
    """The engines deployed so far, each with its placement (in placement order)."""

    def deploy(self, placement: Placement) -> PlacedEngine:
        """Deploys the engine of one placement with its section's `deploy`, and records it."""
        placed = PlacedEngine(placement, placement.spec.deploy(placement.block, self))
        self.placed.append(placed)
        return placed

    def site(self, block: Engine) -> Site:
        """The site a block configured with `host:` (or none) runs on."""
        return self.sites[resolve_host(self.stack, block.host)]

    @property
    def hf_token(self) -> Optional[pulumi.Output[str]]:
        """The stack's Hugging Face token (secret), for engines that download from the Hub; None when unset."""
        if self.stack.hf_token is None:
            return None
        return pulumi.Output.secret(self.stack.hf_token.plaintext or "")

    def place(
        self, block: Engine, build: Callable[[pulumi.ResourceOptions], EngineServer], measures_free_memory: bool = False
    ) -> EngineDeployment:
        """Builds a block's engine on its site (`build` gets the resource options); an engine that measures free
        memory at start waits for the engines already deployed on its GPUs."""
        site = self.site(block)
        depends_on = self.start_after(block) if measures_free_memory else []
        server = build(site.options(depends_on=depends_on))
        return EngineDeployment(server)

    def start_after(self, block: Engine) -> list[pulumi.Resource]:
        """The containers of the engines deployed so far that share one of the block's GPUs on its host.

        An engine that measures free memory when it starts (vLLM) must start once they hold theirs."""
        site = self.site(block)
        host = self.stack.hosts[site.name]
        gpus = list(block.gpus or [])
        return [
            placed.deployment.server.container
            for placed in self.placed
            if placed.placement.host == site.name and shares_a_gpu(host, gpus, list(placed.placement.gpus))
        ]
