"""Replicas of one engine's models behind the real LiteLLM proxy, on loopback: a stack whose engine block
has `replicas:` (one per GPU of one host), rendered by the real program and deployed by the contract
harness (a stand-in per replica container, its models pulled through its own API, the proxy with the
uploaded config unchanged). Replicas on other hosts differ only in their api_base (the host's relay),
which tests/contract/test_relay_contract.py covers; failover depends on the deployments, not the path."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

import httpx
import yaml

from tests.contract import harness
from tests.standins.gateway import start_gateway, stop_gateway

# What a client asks for: a short reply, so the figures measure routing, not generation.
PROMPT = [{"role": "user", "content": "Reply with the single word: ok."}]
HOST = "gpu-01"
# The settings LiteLLM 1.108.7 reads for failover that the program adds (components/gateway_failover.py);
# `plain_defaults` removes them to show what LiteLLM does on its own.
FAILOVER_GENERAL = ("background_health_checks", "health_check_interval", "enable_health_check_routing", "background_health_check_model_groups")
FAILOVER_ROUTER = ("allowed_fails", "cooldown_time", "enable_weighted_failover")
FAILOVER_MODEL_INFO = ("health_check_timeout", "health_check_max_tokens")


@dataclass(frozen=True)
class ReplicaStack:
    """A stack serving one engine block as `count` replicas, rendered by the program."""

    rendered: harness.Rendered
    engine: str
    model: str  # the model name the client loop asks for (the block's first)
    mode: str  # its LiteLLM mode: chat or embedding

    @property
    def config_text(self) -> str:
        return self.rendered.config_text


def replica_stack(block: Mapping[str, Any], engine: str, count: int, gateway: Mapping[str, Any] | None = None, stack: str = "failover") -> ReplicaStack:
    """`block` (an engine block of a stack file) as `count` replicas, one per GPU of one host, rendered."""
    replicated = {k: v for k, v in block.items() if k not in ("host", "gpus")}
    replicated["replicas"] = [{"host": HOST, "gpus": [str(i)]} for i in range(count)]
    raw = {
        "hosts": {HOST: {"docker": "unix:///var/run/docker.sock", "gpus": [{"id": str(i), "memoryGiB": 80} for i in range(count)]}},
        engine: [replicated] if engine == "vllm" else replicated,
        "gateway": dict(gateway or {}),
    }
    rendered = harness.render(raw, stack)
    first = next(m for m in rendered.config["model_list"] if (m["model_info"]["mode"] in ("chat", "embedding")))
    return ReplicaStack(rendered, engine, first["model_name"], first["model_info"]["mode"])


def plain_defaults(config_text: str) -> str:
    """The same config without the failover settings the program adds: LiteLLM's own behaviour."""
    config = yaml.safe_load(config_text)
    for key in FAILOVER_GENERAL:
        config["general_settings"].pop(key, None)
    for key in FAILOVER_ROUTER:
        config["router_settings"].pop(key, None)
    for entry in config["model_list"]:
        for key in FAILOVER_MODEL_INFO:
            entry["model_info"].pop(key, None)
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


@dataclass
class RunningReplicas:
    """The replicas' stand-ins (in api_base order) and the proxy in front of them."""

    stack: ReplicaStack
    url: str
    backends: list[harness.Backend]

    @property
    def master_key(self) -> str:
        return self.stack.rendered.master_key

    def refuse(self, index: int) -> None:
        """The replica's process dies: its address refuses connections."""
        self.backends[index].stop()

    def freeze(self, index: int) -> None:
        """The replica stops answering (SIGSTOP): connections are accepted by the kernel, nothing replies."""
        process = self.backends[index].process
        assert process is not None
        os.killpg(process.pid, signal.SIGSTOP)

    def thaw_all(self) -> None:
        for backend in self.backends:
            if backend.process is not None and backend.process.poll() is None:
                os.killpg(backend.process.pid, signal.SIGCONT)

    def call(self, client: httpx.Client) -> httpx.Response:
        """One call of the stack's model on its route (a chat completion, or embeddings)."""
        headers = {"Authorization": f"Bearer {self.master_key}"}
        if self.stack.mode == "embedding":
            return client.post(f"{self.url}/v1/embeddings", headers=headers, json={"model": self.stack.model, "input": ["ok"]})
        return client.post(
            f"{self.url}/v1/chat/completions", headers=headers, json={"model": self.stack.model, "messages": PROMPT, "max_tokens": 8}
        )

    def health(self) -> dict[str, Any]:
        """GET /health: with background checks on, the latest background results (no new calls)."""
        reply = httpx.get(f"{self.url}/health", headers={"Authorization": f"Bearer {self.master_key}"}, timeout=30)
        reply.raise_for_status()
        return reply.json()

    def wait_unhealthy(self, count: int, bound: float) -> float:
        """Seconds until the background checks report `count` unhealthy deployments (fails after `bound`)."""
        start = time.monotonic()
        while time.monotonic() - start < bound:
            if self.health().get("unhealthy_count", 0) >= count:
                return time.monotonic() - start
            time.sleep(0.25)
        raise AssertionError(f"no health check reported {count} unhealthy deployment(s) within {bound:.0f} s: {self.health()}")


@contextlib.contextmanager
def deploy_replicas(stack: ReplicaStack, workdir: Path, config_text: str | None = None) -> Iterator[RunningReplicas]:
    """The contract harness's deployment of the rendered stack (with Redis when installed); the proxy gets
    `config_text` instead of the uploaded config when given. Frozen replicas are thawed before the stop."""
    with harness.deploy(stack.rendered, workdir, redis=harness.redis_available(), with_gateway=config_text is None) as deployment:
        gateway = None
        running: RunningReplicas | None = None
        try:
            url = deployment.url
            if config_text is not None:
                path = workdir / "config.yaml"
                path.write_text(config_text)
                url, gateway = start_gateway(
                    path, harness.gateway_env(stack.rendered), hosts=deployment.hosts, workdir=workdir / "gateway",
                    timeout=harness.GATEWAY_START_TIMEOUT,
                )
            order = [urlsplit(m["litellm_params"]["api_base"]).hostname for m in stack.rendered.config["model_list"]]
            backends = [b for host in dict.fromkeys(order) for b in deployment.backends.values() if host in b.container.aliases]
            running = RunningReplicas(stack, url, backends)
            yield running
        finally:
            if running is not None:
                running.thaw_all()  # a stopped process group ignores SIGTERM until continued
            if gateway is not None:
                stop_gateway(gateway)


def served_by(reply: httpx.Response) -> str:
    """The deployment id LiteLLM answered from (its x-litellm-model-id header)."""
    return reply.headers.get("x-litellm-model-id", "")


def attempted_retries(reply: httpx.Response) -> int:
    """How many retries LiteLLM needed for this answer (its x-litellm-attempted-retries header)."""
    return int(reply.headers.get("x-litellm-attempted-retries") or 0)


def interval_bound(config_text: str) -> float:
    """The documented detection bound: one health-check interval plus one probe timeout."""
    config = yaml.safe_load(config_text)
    timeouts = [m["model_info"].get("health_check_timeout", 0) for m in config["model_list"]]
    return float(config["general_settings"]["health_check_interval"]) + float(max(timeouts))
