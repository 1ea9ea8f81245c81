"""Contract-test harness: a stack rendered by the real program under mocks, deployed as processes.

`render(raw, stack)` runs `__main__.py` under Pulumi's mocks and keeps what the deployment would
get: the gateway container's uploaded config file (text, unchanged), its envs (secrets revealed),
each engine container's command and envs, and the model pulls `pulumi up` would run.

`deploy(rendered, workdir)` then starts, on loopback only:
- one stand-in per engine container, with that container's command line and envs; the only change
  is where it listens: a container listens on 0.0.0.0 in its own network namespace, a stand-in on
  its own 127.x.y.z address at the port its command line gives (the table `ENGINES` below);
- the models' pulls/downloads, through the stand-ins' own APIs;
- the real LiteLLM proxy with the uploaded config and the gateway envs, the config's host names
  (`qwen3`, `ollama`, `litellm-redis`, ...) mapped to those addresses by `start_gateway(hosts=...)`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import string
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import httpx
import yaml

from config.plan import Plan, reveal, run_program
from tests.standins import infinity as infinity_standin
from tests.standins import ollama as ollama_standin
from tests.standins import speaches as speaches_standin
from tests.standins import vllm as vllm_standin
from tests.standins.gateway import start_gateway, stop_gateway
from tests.standins.launcher import base_env, clear_requests, recorded_requests, spawn, standin_argv, stop, wait_ready

CONTAINER = "docker:index/container:Container"
PULL_COMMAND = "command:local:Command"
GATEWAY_CONTAINER = "gateway"
REDIS_CONTAINER = "gateway-redis"
CONFIG_FILE = "/app/config.yaml"
# The proxy runs without its database: with DATABASE_URL set LiteLLM runs Prisma migrations at
# start, and Prisma cannot fetch its query engine on these machines (nor is there a Postgres).
# Without a database LiteLLM serves the master key only. Every other env of the gateway container
# (master key, salt key, Redis password, engine keys) is passed unchanged.
DROPPED_GATEWAY_ENVS = ("DATABASE_URL",)
# Engines must be up (and their models pulled) before the gateway is asked anything.
ENGINE_START_TIMEOUT = 30.0
GATEWAY_START_TIMEOUT = 120.0


def fresh_password(name: str, length: int) -> str:
    """A new random alphanumeric password per run (what random.RandomPassword(special=False) generates)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def env_dict(envs: Sequence[str] | None) -> dict[str, str]:
    """Docker's `["K=V", ...]` as a dict."""
    return dict(item.split("=", 1) for item in envs or [])


# --- the rendered stack --------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineContainer:
    """One engine container as the program declared it."""

    name: str
    engine: str  # stand-in module under tests/standins
    aliases: tuple[str, ...]  # its names on the Docker network
    command: tuple[str, ...]
    env: Mapping[str, str]  # secrets revealed


@dataclass(frozen=True)
class ModelPull:
    """One `pulumi up` model pull: the container and the model it fetches into it."""

    resource: str
    container: str
    model: str


@dataclass(frozen=True)
class Rendered:
    """What the program renders for one stack, as the deployment would receive it."""

    stack: str
    plan: Plan
    config_text: str  # the uploaded /app/config.yaml, byte for byte
    gateway_command: tuple[str, ...]
    gateway_env: Mapping[str, str]  # every env of the gateway container, secrets revealed
    engines: tuple[EngineContainer, ...]
    pulls: tuple[ModelPull, ...]
    outputs: Mapping[str, Any]  # stack outputs, secrets revealed
    redis_command: tuple[str, ...]  # the gateway's Redis container
    redis_env: Mapping[str, str]

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_text)

    @property
    def master_key(self) -> str:
        return str(self.outputs["masterKey"])

    def engine(self, name: str) -> EngineContainer:
        return next(e for e in self.engines if e.name == name)

    def engine_of_host(self, host: str) -> EngineContainer:
        """The engine container reachable under this network name."""
        found = [e for e in self.engines if host in e.aliases]
        if len(found) != 1:
            raise LookupError(f"{len(found)} engine containers answer to the name {host!r}")
        return found[0]

    def models_json(self) -> str:
        """--models-json for the smoke check, from the stack outputs."""
        return json.dumps({"models": self.outputs["models"], "toolModels": self.outputs["toolModels"]})


def _component_type(plan: Plan, parent_urn: str) -> str:
    try:
        return plan.by_urn(parent_urn).type
    except StopIteration:
        return ""


# Component type -> stand-in module.
ENGINE_COMPONENTS = {
    "llmstack:index:VllmServer": "vllm",
    "llmstack:index:OllamaServer": "ollama",
    "llmstack:index:InfinityServer": "infinity",
    "llmstack:index:SpeachesServer": "speaches",
}


def render(raw: Mapping[str, Any], stack: str, password: Callable[[str, int], str] = fresh_password) -> Rendered:
    """Run the program under mocks on this raw stack config; keep what the containers get."""
    plan = run_program(dict(raw), stack=stack, password=password)
    gateway = [r for r in plan.of_type(CONTAINER) if r.name == GATEWAY_CONTAINER]
    if len(gateway) != 1:
        raise LookupError(f"{len(gateway)} containers named {GATEWAY_CONTAINER!r} in the {stack} plan")
    gateway_inputs = gateway[0].revealed()
    uploads = [u for u in gateway_inputs.get("uploads") or [] if u.get("file") == CONFIG_FILE]
    if len(uploads) != 1:
        raise LookupError(f"the gateway container has {len(uploads)} uploads of {CONFIG_FILE}")
    engines = []
    for resource in plan.of_type(CONTAINER):
        engine = ENGINE_COMPONENTS.get(_component_type(plan, resource.parent))
        if engine is None:
            continue
        inputs = resource.revealed()
        aliases = tuple(a for net in inputs.get("networksAdvanced") or [] for a in net.get("aliases") or [])
        engines.append(
            EngineContainer(resource.name, engine, aliases, tuple(inputs.get("command") or ()), env_dict(inputs.get("envs")))
        )
    redis = [r.revealed() for r in plan.of_type(CONTAINER) if r.name == REDIS_CONTAINER]
    if len(redis) != 1:
        raise LookupError(f"{len(redis)} containers named {REDIS_CONTAINER!r} in the {stack} plan")
    # Engine containers are known here by resource name; a pull's trigger names its container's Docker name.
    by_docker_name = {r.revealed()["name"]: r.name for r in plan.of_type(CONTAINER)}
    pulls = []
    for resource in plan.of_type(PULL_COMMAND):
        if _component_type(plan, resource.parent) not in ENGINE_COMPONENTS:
            continue  # not a model pull (the web UI's gateway key registration)
        # triggers = [docker host, container name, model] (components/model_pull.py)
        _, container, model = reveal(resource.inputs)["triggers"]
        pulls.append(ModelPull(resource.name, by_docker_name.get(container, container), model))
    return Rendered(
        stack=stack,
        plan=plan,
        config_text=uploads[0]["content"],
        gateway_command=tuple(gateway_inputs.get("command") or ()),
        gateway_env=env_dict(gateway_inputs.get("envs")),
        engines=tuple(engines),
        pulls=tuple(pulls),
        outputs=reveal(plan.outputs),
        redis_command=tuple(redis[0].get("command") or ()),
        redis_env=env_dict(redis[0].get("envs")),
    )


# --- how each engine's stand-in listens --------------------------------------------------------


@dataclass(frozen=True)
class Listening:
    """A stand-in's command line and env with its listen address set, and how to probe it."""

    argv: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    ready_headers: dict[str, str] = field(default_factory=dict)


def _parsed(container: EngineContainer, parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except SystemExit:  # argparse refused the container's command line, as the real CLI would
        raise RuntimeError(
            f"container {container.name}: the {container.engine} stand-in refuses its command line "
            f"{list(container.command)} / env {sorted(container.env)}"
        ) from None


def _vllm(c: EngineContainer, ip: str) -> Listening:
    # `vllm serve` listens on --host (default 0.0.0.0), --port (default 8000).
    argv = [*c.command, "--host", ip]
    port = _parsed(c, lambda: vllm_standin.parse_settings(argv, dict(c.env))).port
    return Listening(argv, dict(c.env), port, "/health")


def _ollama(c: EngineContainer, ip: str) -> Listening:
    # The image sets OLLAMA_HOST=0.0.0.0:11434; `ollama serve` listens there.
    _, port = ollama_standin.parse_host(c.env.get("OLLAMA_HOST", ollama_standin.DEFAULT_HOST))
    return Listening(list(c.command), {**c.env, "OLLAMA_HOST": f"{ip}:{port}"}, port, "/")


def _infinity(c: EngineContainer, ip: str) -> Listening:
    # `infinity_emb v2` listens on --host/INFINITY_HOST (default 0.0.0.0), --port (default 7997).
    env = {**c.env, "INFINITY_HOST": ip}
    port = _parsed(c, lambda: infinity_standin.parse_settings(list(c.command), env)).port
    return Listening(list(c.command), env, port, "/health")


def _speaches(c: EngineContainer, ip: str) -> Listening:
    # The image runs uvicorn with UVICORN_HOST=0.0.0.0, UVICORN_PORT=8000.
    env = {**c.env, "UVICORN_HOST": ip}
    settings = _parsed(c, lambda: speaches_standin.parse_settings(list(c.command), env))
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    return Listening(list(c.command), env, settings.port, "/health", headers)


ENGINES: dict[str, Callable[[EngineContainer, str], Listening]] = {
    "vllm": _vllm,
    "ollama": _ollama,
    "infinity": _infinity,
    "speaches": _speaches,
}


def _rebased_env(env: Mapping[str, str], root: Path) -> dict[str, str]:
    """Container paths in env values (HF_HOME=/app/.cache/...) moved under the stand-in's own root."""
    out = {}
    for name, value in env.items():
        if value.startswith("/") and " " not in value:
            out[name] = str(root / PurePosixPath(value).relative_to("/"))
        else:
            out[name] = value
    return out


# --- addresses ----------------------------------------------------------------------------------


def _bindable(ip: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def loopback_addresses(wanted: Mapping[str, int]) -> dict[str, str]:
    """A free 127.x.y.z address per name, in one block where every (address, port) pair is bindable.

    Each deployment gets its own block, so stacks whose engines share a port (8000) never clash;
    the search starts at a block picked from the process id, so concurrent runs rarely meet."""
    names = sorted(wanted)
    blocks = [(second, third) for second in range(64, 250) for third in range(0, 250, 10)]
    start = os.getpid() * 7919 % len(blocks)
    for second, third in blocks[start:] + blocks[:start]:
        addresses = {name: f"127.{second}.{third}.{i + 2}" for i, name in enumerate(names)}
        if all(_bindable(addresses[n], wanted[n]) for n in names):
            return addresses
    raise RuntimeError(f"no free loopback block for {wanted}")


# --- a running deployment ------------------------------------------------------------------------


@dataclass
class Backend:
    """One engine's stand-in process."""

    container: EngineContainer
    ip: str
    listening: Listening
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    module: str = ""  # the stand-in module under tests/standins, when not the engine's own (vllm_stream)

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.listening.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # HOME is the container's home: ~/.ollama, ~/.cache/huggingface stay in the test's tmp dir.
        env = base_env({**_rebased_env(self.listening.env, self.workdir / "rootfs"), "HOME": str(self.workdir / "home")})
        log = self.workdir / "standin.log"
        self.process = spawn(standin_argv(self.module or self.container.engine, self.listening.argv), env, log)
        try:
            wait_ready(self.url + self.listening.ready_path, self.process, ENGINE_START_TIMEOUT, self.listening.ready_headers, log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def requests(self) -> list[dict[str, Any]]:
        return recorded_requests(self.url)

    def clear(self) -> None:
        clear_requests(self.url)


@dataclass
class Deployment:
    """Stand-ins, model pulls and the real LiteLLM proxy for one rendered stack."""

    rendered: Rendered
    url: str
    backends: dict[str, Backend]  # engine container name -> its stand-in
    hosts: dict[str, str]  # network name -> loopback address
    gateway: subprocess.Popen[bytes] | None
    workdir: Path
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis: tuple[str, int] | None = None  # where a real redis-server listens, when one runs
    gateway_start_s: float = 0.0  # from spawning LiteLLM to its /health/liveliness answering

    @property
    def master_key(self) -> str:
        return self.rendered.master_key

    @property
    def gateway_log(self) -> Path:
        return self.workdir / "gateway" / "litellm.log"

    def clear_requests(self) -> None:
        for backend in self.backends.values():
            if backend.process is not None:
                backend.clear()


def api_bases(config: Mapping[str, Any]) -> dict[str, int]:
    """Host name -> port of every api_base in the config (one port per host)."""
    found: dict[str, set[int]] = {}
    for entry in config.get("model_list") or []:
        url = urlsplit(entry["litellm_params"]["api_base"])
        found.setdefault(url.hostname or "", set()).add(url.port or (443 if url.scheme == "https" else 80))
    clashes = {h: p for h, p in found.items() if len(p) != 1}
    if clashes:
        raise AssertionError(f"one host reached on several ports: {clashes}")
    return {host: ports.pop() for host, ports in found.items()}


def pull_models(rendered: Rendered, backends: Mapping[str, Backend]) -> None:
    """The pulls `pulumi up` runs (docker exec ... ollama pull / curl POST /v1/models/ID), via the engines' APIs."""
    for pull in rendered.pulls:
        backend = backends[pull.container]
        engine = backend.container.engine
        if engine == "ollama":
            reply = httpx.post(f"{backend.url}/api/pull", json={"model": pull.model, "stream": False}, timeout=30)
            ok = reply.status_code == 200 and reply.json().get("status") == "success"
        elif engine == "speaches":
            reply = httpx.post(f"{backend.url}/v1/models/{pull.model}", headers=backend.listening.ready_headers, timeout=30)
            ok = reply.status_code in (200, 201)
        else:
            raise AssertionError(f"{pull.resource}: no pull API known for a {engine} container")
        if not ok:
            raise AssertionError(f"{pull.resource}: pulling {pull.model} into {pull.container} answered {reply.status_code}: {reply.text}")


@contextlib.contextmanager
def deploy(
    rendered: Rendered,
    workdir: Path,
    redis: bool = False,
    with_gateway: bool = True,
    standins: Mapping[str, str] | None = None,
    standin_env: Mapping[str, str] | None = None,
) -> Iterator[Deployment]:
    """Start the stand-ins, pull the models, start LiteLLM with the rendered config; stop everything after.

    `redis`: also run redis-server where `litellm-redis` points (else nothing listens there).
    `with_gateway=False`: everything but LiteLLM (the caller starts its own, with `gateway_env()`).
    `standins`: engine -> another stand-in module taking the same command line (`{"vllm": "vllm_stream"}`), with
    `standin_env` added to its env."""
    config = rendered.config
    bases = api_bases(config)
    engines = {host: rendered.engine_of_host(host) for host in bases}
    router = config.get("router_settings") or {}
    wanted = dict(bases)
    if router.get("redis_host"):
        wanted[router["redis_host"]] = int(router.get("redis_port") or 6379)
    hosts = loopback_addresses(wanted)
    backends: dict[str, Backend] = {}
    extra: list[subprocess.Popen[bytes]] = []
    gateway = None
    try:
        for host, container in sorted(engines.items()):
            listening = ENGINES[container.engine](container, hosts[host])
            if listening.port != bases[host]:
                raise AssertionError(
                    f"the config reaches {container.name} at {host}:{bases[host]}, but its command line "
                    f"makes it listen on port {listening.port}"
                )
            module = (standins or {}).get(container.engine, "")
            if module:
                listening = Listening(listening.argv, {**listening.env, **(standin_env or {})}, listening.port,
                                      listening.ready_path, listening.ready_headers)
            backends[container.name] = Backend(container, hosts[host], listening, workdir / container.name, module=module)
        for backend in backends.values():
            backend.start()
        pull_models(rendered, backends)
        if redis:
            # The password is the Redis container's own: the gateway connects only if its env matches.
            password = rendered.redis_env["REDIS_PASSWORD"]
            extra.append(start_redis(hosts[router["redis_host"]], wanted[router["redis_host"]], password, workdir / "redis"))
        url, started = "", time.monotonic()
        if with_gateway:
            config_path = workdir / "config.yaml"
            config_path.write_text(rendered.config_text)  # unchanged
            url, gateway = start_gateway(
                config_path, gateway_env(rendered), hosts=hosts, workdir=workdir / "gateway", timeout=GATEWAY_START_TIMEOUT
            )
        start_s = time.monotonic() - started
        redis_address = (hosts[router["redis_host"]], wanted[router["redis_host"]]) if redis else None
        yield Deployment(rendered, url, backends, hosts, gateway, workdir, extra, redis_address, start_s)
    finally:
        if gateway is not None:
            stop_gateway(gateway)
        for backend in backends.values():
            backend.stop()
        for process in extra:
            stop(process)


def gateway_env(rendered: Rendered) -> dict[str, str]:
    """The gateway container's envs as the proxy process gets them: all but DROPPED_GATEWAY_ENVS."""
    return {k: v for k, v in rendered.gateway_env.items() if k not in DROPPED_GATEWAY_ENVS}


def redis_available() -> bool:
    """Whether Debian's redis-server is installed (CI installs it)."""
    import shutil

    return shutil.which("redis-server") is not None


def start_redis(ip: str, port: int, password: str, workdir: Path) -> subprocess.Popen[bytes]:
    """redis-server as the Redis container runs it (`--requirepass "$REDIS_PASSWORD"`), on one loopback address."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--bind", ip, "--port", str(port), "--requirepass", password,
            "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    process = spawn(argv, base_env(), workdir / "redis.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((ip, port), timeout=1):
            return process
        time.sleep(0.05)
    stop(process)
    raise TimeoutError(f"redis-server did not listen on {ip}:{port}")


# --- what each engine must receive --------------------------------------------------------------

# (engine, route kind) -> the engine's own path (service-facts.md; LiteLLM appends it to api_base).
ENGINE_PATHS = {
    ("vllm", "chat"): "/v1/chat/completions",
    ("ollama", "chat"): "/api/chat",
    ("infinity", "embedding"): "/embeddings",
    ("infinity", "rerank"): "/rerank",
    ("speaches", "transcription"): "/v1/audio/transcriptions",
    ("speaches", "speech"): "/v1/audio/speech",
}
# The env of each engine container that holds its API key (None: the engine has no auth).
ENGINE_KEY_ENVS = {"vllm": "VLLM_API_KEY", "ollama": None, "infinity": "INFINITY_API_KEY", "speaches": "API_KEY"}


@dataclass(frozen=True)
class WireCall:
    """What one model name must turn into at its engine: derived from the stack file and the
    engine containers' own command lines and envs, never from the LiteLLM config under test."""

    name: str
    kind: str  # smoke route kind: chat, embedding, rerank, transcription, speech
    container: str
    path: str
    model: str  # the `model` field the engine must get
    key: str | None  # the bearer token the engine must get (None: no Authorization header)


def _one(found: list[EngineContainer], what: str) -> EngineContainer:
    if len(found) != 1:
        raise LookupError(f"{len(found)} engine containers for {what}")
    return found[0]


def wire_expectations(raw: Mapping[str, Any], rendered: Rendered) -> dict[str, WireCall]:
    """Model name -> the call its engine must receive."""
    from config.validation import validate

    stack = validate(dict(raw))
    of = {kind: [e for e in rendered.engines if e.engine == kind] for kind in ENGINES}
    pulled_into = {(p.container, p.model) for p in rendered.pulls}
    calls: dict[str, WireCall] = {}

    def add(name: str, kind: str, container: EngineContainer, model: str) -> None:
        key_env = ENGINE_KEY_ENVS[container.engine]
        key = container.env.get(key_env) if key_env else None
        if key_env and not key:
            raise AssertionError(f"container {container.name} has no {key_env}: the engine would be open")
        calls[name] = WireCall(name, kind, container.name, ENGINE_PATHS[(container.engine, kind)], model, key)

    for entry in stack.vllm:
        settings = {c.name: vllm_standin.parse_settings(list(c.command), dict(c.env)) for c in of["vllm"]}
        container = _one([c for c in of["vllm"] if settings[c.name].model == entry.model and
                          (len(of["vllm"]) == 1 or c.name == entry.name)], f"vLLM model {entry.name}")
        add(entry.name, "chat", container, settings[container.name].served_model_names[0])
    if stack.ollama is not None:
        for tag in stack.ollama.models:
            container = _one([c for c in of["ollama"] if (c.name, tag.model) in pulled_into], f"Ollama tag {tag.model}")
            add(tag.name, "chat", container, tag.model)
    if stack.infinity is not None:
        served = {c.name: [m.model_id for m in infinity_standin.parse_settings(list(c.command), dict(c.env)).models]
                  for c in of["infinity"]}
        for embedder in stack.infinity.models:
            container = _one([c for c in of["infinity"] if embedder.model in served[c.name]], f"Infinity model {embedder.model}")
            add(embedder.name, embedder.mode, container, embedder.model)
    if stack.speaches is not None:
        for voice in stack.speaches.models:
            container = _one([c for c in of["speaches"] if (c.name, voice.model) in pulled_into], f"Speaches model {voice.model}")
            add(voice.name, voice.mode, container, voice.model)
    return calls


# --- helpers for the tests -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
# Behaviours measured by the tests, printed at the end of the run (tests/contract/conftest.py).
OBSERVED: list[str] = []


def observe(line: str) -> None:
    OBSERVED.append(line)


def stack_file(stack: str) -> dict[str, Any]:
    """The raw `llmstack` config of Pulumi.<stack>.yaml."""
    from config.source import from_stack_file

    return from_stack_file(ROOT / f"Pulumi.{stack}.yaml")


def route_of_kind() -> dict[str, str]:
    from config import smoke

    return {route.kind: route.path for route in smoke.ROUTES}


def expected_rows(outputs: Mapping[str, Any]) -> set[tuple[str, ...]]:
    """(route, model, ok) for every model of the stack outputs `models` and `toolModels`."""
    paths = route_of_kind()
    rows = {(paths[kind], name, "ok") for kind, names in outputs["models"].items() for name in names}
    return rows | {(paths["tools"], name, "ok") for name in outputs["toolModels"]}


def run_smoke(deployment: Deployment, *extra: str, timeout: float = 60) -> tuple[int, str, set[tuple[str, ...]]]:
    """`python -m config smoke --url URL --key KEY [extra...]`: exit status, printed text, table rows."""
    import io

    from config import smoke

    out = io.StringIO()
    code = smoke.main(["--url", deployment.url, "--key", deployment.master_key, "--timeout", str(timeout), *extra], out=out)
    text = out.getvalue()
    lines = [line for line in text.splitlines()[1:] if line.strip() and not line.startswith("smoke:")]
    return code, text, {tuple(line.split()[:3]) for line in lines}


def redis_call(address: tuple[str, int], password: str, *command: str) -> bytes:
    """One authenticated Redis command over RESP; returns the raw reply of the command."""
    def encode(*parts: str) -> bytes:
        return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p.encode()), p.encode()) for p in parts)

    with socket.create_connection(address, timeout=5) as connection:
        # QUIT makes the server close the connection once it has answered.
        connection.sendall(encode("AUTH", password) + encode(*command) + encode("QUIT"))
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    auth, _, rest = reply.partition(b"\r\n")
    if auth != b"+OK":
        raise PermissionError(f"redis AUTH answered {auth!r}")
    return rest
