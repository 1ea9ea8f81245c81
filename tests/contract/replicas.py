"""Replicas of one engine's models behind the real LiteLLM proxy, on loopback: the gateway config the
program renders for models with several deployments, each replica a stand-in started from the engine's
container command line and envs (its models pulled through its own API, as `pulumi up` does).

The program renders one deployment per replica under the same model name once `replicas:` exists on the
engine blocks; until then the entries are the single engine container's entries repeated with each
replica's api_base, and the gateway settings come from the stack file through the program's own `gateway_args`.
A remote replica's api_base is its relay (https://<address>:<relayPort>/<alias>/v1); here every replica
is reached directly over http on its own loopback address, which is what the failover depends on."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

from components.litellm_config import render_litellm_config
from components.model_entry import LiteLLMModelEntry
from config.program import gateway_args
from config.schema import StackConfig
from tests.contract import harness
from tests.standins.gateway import start_gateway, stop_gateway
from tests.standins.launcher import stop

# What a client asks for: a short reply, so the figures measure routing, not generation.
PROMPT = [{"role": "user", "content": "Reply with the single word: ok."}]
# The settings LiteLLM 1.108.7 reads for failover that the program adds (components/gateway_failover.py);
# `plain_defaults` removes them to show what LiteLLM does on its own.
FAILOVER_GENERAL = ("background_health_checks", "health_check_interval", "enable_health_check_routing", "background_health_check_model_groups")
FAILOVER_ROUTER = ("allowed_fails", "cooldown_time", "enable_weighted_failover")
FAILOVER_MODEL_INFO = ("health_check_timeout", "health_check_max_tokens")


def replica_host(alias: str, index: int) -> str:
    """The network name replica `index` is reached under (the first keeps the container's own alias)."""
    return alias if index == 0 else f"{alias}-r{index}"


def _entry(model: Mapping[str, Any], api_base: str) -> LiteLLMModelEntry:
    """A rendered model_list item back as the model entry an engine component exposes, at another api_base."""
    params, info = model["litellm_params"], model["model_info"]
    entry: LiteLLMModelEntry = {"model_name": model["model_name"], "model": params["model"], "api_base": api_base, "mode": info["mode"]}
    if str(params.get("api_key", "")).startswith("os.environ/"):
        entry["api_key_env"] = params["api_key"].removeprefix("os.environ/")
    if info.get("max_tokens"):
        entry["max_tokens"] = info["max_tokens"]
    if info.get("supports_function_calling"):
        entry["supports_function_calling"] = True
    return entry


@dataclass(frozen=True)
class ReplicaStack:
    """One engine of a stack file, rendered, with the gateway config for `count` replicas of its models."""

    rendered: harness.Rendered
    container: harness.EngineContainer
    model: str  # the model name the client loop asks for (the engine's first)
    mode: str  # its LiteLLM mode: chat or embedding
    hosts: tuple[str, ...]  # each replica's network name
    config_text: str


def replica_stack(raw: Mapping[str, Any], count: int = 2, stack: str = "failover", engine: str = "vllm") -> ReplicaStack:
    """Render `raw` (one block of `engine`) with the real program, then the gateway config for `count` replicas."""
    rendered = harness.render(dict(raw), stack)
    [container] = [e for e in rendered.engines if e.engine == engine]
    config = rendered.config
    models = [m for m in config["model_list"] if urlsplit(m["litellm_params"]["api_base"]).hostname in container.aliases]
    url = urlsplit(models[0]["litellm_params"]["api_base"])
    alias = url.hostname or ""
    hosts = tuple(replica_host(alias, i) for i in range(count))
    entries = [
        _entry(model, urlunsplit(urlsplit(model["litellm_params"]["api_base"])._replace(netloc=f"{host}:{url.port}")))
        for model in models
        for host in hosts
    ]
    # The program's own mapping of `llmstack:gateway` to the gateway settings (config/program.py).
    settings = gateway_args(StackConfig.model_validate({"gateway": raw.get("gateway") or {}}), [], [], "")["settings"]
    router = config["router_settings"]
    text = render_litellm_config(entries, settings, {"host": router["redis_host"], "port": router["redis_port"]})
    return ReplicaStack(rendered, container, models[0]["model_name"], models[0]["model_info"]["mode"], hosts, text)


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
    """The replicas' stand-ins and the proxy in front of them."""

    stack: ReplicaStack
    url: str
    backends: list[harness.Backend]
    workdir: Path
    processes: list[Any] = field(default_factory=list)

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
def deploy_replicas(stack: ReplicaStack, workdir: Path, config_text: str | None = None, redis: bool = True) -> Iterator[RunningReplicas]:
    """Start one stand-in per replica, Redis (when installed, with the generated password) and the real
    LiteLLM proxy with `config_text` (default: the rendered one); stop everything after."""
    config = yaml.safe_load(config_text or stack.config_text)
    port = urlsplit(config["model_list"][0]["litellm_params"]["api_base"]).port or 80
    router = config["router_settings"]
    wanted = {host: port for host in stack.hosts}
    use_redis = redis and harness.redis_available()
    if use_redis:
        wanted[router["redis_host"]] = int(router["redis_port"])
    addresses = harness.loopback_addresses(wanted)
    backends: list[harness.Backend] = []
    processes: list[Any] = []
    gateway = None
    running: RunningReplicas | None = None
    try:
        for host in stack.hosts:
            listening = harness.ENGINES[stack.container.engine](stack.container, addresses[host])
            backend = harness.Backend(stack.container, addresses[host], listening, workdir / host)
            backends.append(backend)
            backend.start()
            pulls = [pull for pull in stack.rendered.pulls if pull.container == stack.container.name]
            harness.pull_models(replace(stack.rendered, pulls=tuple(pulls)), {stack.container.name: backend})
        if use_redis:
            password = stack.rendered.redis_env["REDIS_PASSWORD"]
            processes.append(harness.start_redis(addresses[router["redis_host"]], int(router["redis_port"]), password, workdir / "redis"))
        path = workdir / "config.yaml"
        path.write_text(config_text or stack.config_text)
        url, gateway = start_gateway(
            path, harness.gateway_env(stack.rendered), hosts=addresses, workdir=workdir / "gateway", timeout=harness.GATEWAY_START_TIMEOUT
        )
        running = RunningReplicas(stack, url, backends, workdir, processes)
        yield running
    finally:
        if running is not None:
            running.thaw_all()  # a stopped process group ignores SIGTERM until continued
        if gateway is not None:
            stop_gateway(gateway)
        for backend in backends:
            backend.stop()
        for process in processes:
            stop(process)


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

