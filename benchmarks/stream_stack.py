"""The prod stack as processes on loopback for the streaming benchmarks: the engines as stand-ins (vLLM's a streaming
one), the real Redis, and real LiteLLM gateways started with the config, envs and command line the program renders.

A gateway is described by a `GatewaySetup` (config text, envs, extra command-line arguments): `rendered_setup` is
what the prod stack deploys now, `todays_setup` what it deployed before the streaming defaults of issue 15 (the
rendered config and envs without `components.litellm.STREAMING_ENVS`, one worker: `numWorkers` unset).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from components import litellm as litellm_component
from components import litellm_metrics
from tests.contract import harness
from tests.standins.gateway import Gateway, start_gateway, stop_gateway
from tests.standins.launcher import free_port
from tests.standins.vllm_stream import CHUNKS_ENV, INTERVAL_ENV

from benchmarks.stream_load import StreamTarget

MODEL = "qwen3"
GATEWAY_START_TIMEOUT = 300.0  # several gateways start at once on a shared 2-core machine


@dataclass(frozen=True)
class GatewaySetup:
    """One way to run the gateway: the config file's text, the container's envs and the command's extra arguments."""

    label: str
    config_text: str
    env: Mapping[str, str]
    args: tuple[str, ...] = ()

    @property
    def workers(self) -> int:
        return int(self.args[self.args.index("--num_workers") + 1]) if "--num_workers" in self.args else 1


def command_args(command: Sequence[str]) -> tuple[str, ...]:
    """The gateway container's command without `--config FILE --port N` (the launcher gives its own)."""
    out, skip = [], False
    for arg in command:
        if skip:
            skip = False
        elif arg in ("--config", "--port", "--host"):
            skip = True
        else:
            out.append(arg)
    return tuple(out)


def rendered_setup(rendered: harness.Rendered, label: str = "new defaults", workers: int | None = None) -> GatewaySetup:
    """What the program deploys: its config file, envs and command (`workers` overrides `--num_workers`)."""
    args = list(command_args(rendered.gateway_command))
    if "--num_workers" in args:
        del args[args.index("--num_workers"): args.index("--num_workers") + 2]
    count = workers if workers is not None else GatewaySetup("", "", {}, command_args(rendered.gateway_command)).workers
    if count > 1:
        args += ["--num_workers", str(count)]
    return GatewaySetup(label, rendered.config_text, harness.gateway_env(rendered), tuple(args))


def todays_setup(rendered: harness.Rendered, label: str = "today") -> GatewaySetup:
    """The gateway as deployed before the streaming defaults: same config, none of STREAMING_ENVS, one worker."""
    env = {k: v for k, v in harness.gateway_env(rendered).items() if k not in litellm_component.STREAMING_ENVS}
    return GatewaySetup(label, rendered.config_text, env, ())


@dataclass
class StreamStack:
    """The prod stack's engines, Redis and every gateway started so far."""

    rendered: harness.Rendered
    deployment: harness.Deployment
    work: Path
    engine: StreamTarget  # the vLLM stand-in, called directly
    engine_pid: int
    gateways: list[tuple[GatewaySetup, Gateway]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: int = 0

    def start(self, setup: GatewaySetup, bind: str = "127.0.0.1") -> Gateway:
        """Start one gateway with `setup`, listening on `bind` (its own metrics listener and multiprocess dir).
        Safe to call from several threads: gateways start in parallel."""
        with self._lock:
            index = self._started
            self._started += 1
        config = self.work / f"gateway-{index}.yaml"
        config.write_text(setup.config_text)
        env = dict(setup.env)
        if litellm_metrics.METRICS_PORT_ENV in env:
            # Each gateway's metrics listener on a port of its own, its samples in a directory of its own.
            env[litellm_metrics.METRICS_PORT_ENV] = str(free_port(bind))
            env[litellm_metrics.MULTIPROC_DIR_ENV] = str(self.work / f"gateway-{index}-multiproc")
        gateway = start_gateway(
            config, env, hosts=self.deployment.hosts, bind=bind, workdir=self.work / f"gateway-{index}",
            timeout=GATEWAY_START_TIMEOUT, extra_args=setup.args,
        )
        with self._lock:
            self.gateways.append((setup, gateway))
        return gateway

    def target(self, gateway: Gateway, label: str) -> StreamTarget:
        url = urlsplit(gateway.url)
        return StreamTarget(label, url.hostname or "", url.port or 80, self.deployment.master_key, MODEL)


@contextlib.contextmanager
def prod_stack(chunks: int, interval_ms: float, stack: str = "prod") -> Iterator[StreamStack]:
    """Render the stack, start its engines (vLLM streaming `chunks` tokens `interval_ms` apart) and Redis; stop all after."""
    raw = harness.stack_file(stack)
    rendered = harness.render(raw, stack)
    call = harness.wire_expectations(raw, rendered)[MODEL]
    work = Path(tempfile.mkdtemp(prefix="streaming-bench-"))
    standin_env = {CHUNKS_ENV: str(chunks), INTERVAL_ENV: str(interval_ms)}
    try:
        with harness.deploy(rendered, work / "deployment", redis=harness.redis_available(), with_gateway=False,
                            standins={"vllm": "vllm_stream"}, standin_env=standin_env) as deployment:
            backend = deployment.backends[call.container]
            assert backend.process is not None
            engine = StreamTarget("engine", backend.ip, backend.listening.port, call.key or "", call.model)
            bench = StreamStack(rendered, deployment, work, engine, backend.process.pid)
            try:
                yield bench
            finally:
                for _, gateway in bench.gateways:
                    stop_gateway(gateway.process)
    finally:
        shutil.rmtree(work, ignore_errors=True)
