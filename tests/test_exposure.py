"""Exposure and health rules, checked on the plan of every stack file of the repository and of a stack using every engine.

- Only the gateway (LiteLLM) publishes a host port; Postgres, Redis and the engines are reachable only
  on the stack's Docker network, each under an alias equal to its container name.
- Redis requires a password (--requirepass from an env; its healthcheck authenticates), every engine
  with auth requires its key (vLLM, Infinity, Speaches), and the gateway holds the same keys. Ollama has
  no auth: it publishes nothing and sits on the stack network only.
- Every container has a healthcheck that works (no shell operators in an exec-form test), restarts
  unless stopped, and `pulumi up` waits for it. No container is privileged or on the host network.
- Every volume is retained on delete and mounted by a container; no host path is mounted.
- Every env list that holds a key, password, token or database URL is a Pulumi secret.
"""

import re
from collections.abc import Iterator

import pytest
import yaml

from components import container as conventions
from config.plan import Plan, is_secret, reveal, run_program
from config.secrets import SecretValue
from config.source import from_stack_file
from tests.conftest import STACK_FILES, envs_of

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
LITELLM_PORT = 4000
# Tokens that only a shell understands: in an exec-form (CMD) test they are passed as plain arguments.
SHELL_TOKENS = {"||", "|", "&&", ";", "&", ">", ">>", "<", "2>&1", "$(", "`"}
SECRET_ENV = re.compile(r"(KEY|PASSWORD|TOKEN|SECRET|DATABASE_URL)")
# The engine key each engine container requires (Ollama has none).
ENGINE_KEY_ENVS = {"vllm": "VLLM_API_KEY", "infinity": "INFINITY_API_KEY", "speaches": "API_KEY"}

# Components published on 127.0.0.1 of the host (and nowhere else).
LOOPBACK_UIS = ("prometheus", "grafana", "open-webui")
# dcgm-exporter's distroless image has no shell and no HTTP client to probe itself: Prometheus' `up` for
# it (the TargetDown alert) is its health check.
WATCHED_WITHOUT_HEALTHCHECK = ("dcgm-exporter",)

# Every engine, two vLLM servers on their own GPUs, auto sizing, a custom network, every gateway knob
# and both secrets, monitoring, on one host (a stack spans one host for now).
EVERYTHING = {
    "hosts": {
        "gpu-01": {
            "docker": "ssh://deploy@gpu-01",
            "sshOpts": ["-o", "StrictHostKeyChecking=accept-new"],
            "gpus": [{"id": "0", "memoryGiB": 80}, {"id": "1", "memoryGiB": 48}],
        }
    },
    "network": {"name": "ai-net", "subnet": "10.42.0.0/24"},
    "vllm": [
        {"name": "qwen3", "model": "Qwen/Qwen3-30B-A3B-FP8", "gpus": ["0"], "gpuMemoryUtilization": "auto",
         "reasoningParser": "qwen3", "toolCallParser": "hermes", "maxModelLen": 32768},
        {"name": "qwen3-coder", "model": "Qwen/Qwen3-Coder-7B", "gpus": ["1"], "gpuMemoryUtilization": 0.5,
         "healthStartPeriod": "30m", "extraArgs": ["--max-num-seqs", "16"]},
    ],
    "ollama": {"gpus": ["1"], "vramGiB": 8, "env": {"OLLAMA_KEEP_ALIVE": "24h"},
               "models": [{"name": "qwen2.5-vl", "model": "qwen2.5vl:7b-q4_K_M", "maxTokens": 16384}]},
    "infinity": {"gpus": ["1"], "vramGiB": 4, "models": [
        {"name": "nomic", "model": "nomic-ai/nomic-embed-text-v1.5", "mode": "embedding"},
        {"name": "bge-reranker", "model": "BAAI/bge-reranker-v2-m3", "mode": "rerank"},
    ]},
    "speaches": {"gpus": ["0"], "vramGiB": 3, "models": [
        {"name": "whisper", "model": "Systran/faster-whisper-small", "mode": "transcription"},
        {"name": "piper", "model": "speaches-ai/piper-fr_FR-siwis-medium", "mode": "speech"},
    ]},
    "gateway": {"port": 8080, "bind": "0.0.0.0", "numWorkers": 2, "fallbacks": {"qwen3": ["qwen3-coder"]},
                "rateLimits": {"qwen3": {"rpm": 600}}},
    "masterKey": SecretValue(),
    "hfToken": SecretValue(),
    "monitoring": {"retention": "7d", "scrapeInterval": "30s", "grafana": {"port": 3001}, "prometheus": {"port": None},
                   "alerts": {"kvCacheRatio": 0.85}},
    "webui": {"port": 3000, "url": "https://chat.example.com", "speechVoice": "siwis"},
}
SECRETS = {"masterKey": "sk-" + "e" * 40, "hfToken": "hf_everything0123456789"}

STACKS = {path.name: path for path in STACK_FILES} | {"everything": None}


@pytest.fixture(scope="module", params=sorted(STACKS), ids=sorted(STACKS))
def stack(request) -> tuple[dict, Plan]:
    """(raw config, plan) of each stack."""
    path = STACKS[request.param]
    if path is None:
        return EVERYTHING, run_program(EVERYTHING, stack="everything", secrets=SECRETS)
    raw = from_stack_file(path)
    return raw, run_program(raw, stack=path.name.split(".")[1])


def containers(plan: Plan) -> list:
    found = plan.of_type(CONTAINER)
    assert found, "the plan has no container"
    return found


def component(resource) -> str:
    labels = {label["label"]: label["value"] for label in resource.inputs.get("labels") or []}
    return labels[f"{conventions.LABEL_PREFIX}.component"]


def of_component(plan: Plan, name: str) -> list:
    return [c for c in containers(plan) if component(c) == name]


def one(plan: Plan, name: str):
    """The container of a component; for the gateway, its first replica (every replica gets the same spec)."""
    found = of_component(plan, name)
    assert len(found) == 1 or name == "litellm", (name, len(found))
    return sorted(found, key=lambda r: r.name)[0]




def network_name(plan: Plan) -> str:
    """The stack network's name: one network per host, each under the same name."""
    names = {network.inputs["name"] for network in plan.of_type(NETWORK)}
    [name] = names
    return name


def secret_values(plan: Plan) -> Iterator[str]:
    """Every key, password, token and database URL a container gets."""
    for resource in containers(plan):
        for name, value in envs_of(resource).items():
            if SECRET_ENV.search(name) and value:
                yield value


# --- exposure ------------------------------------------------------------------------------------


def test_only_the_gateway_or_the_edge_publishes_a_port(stack):
    raw, plan = stack
    published = {c.inputs["name"]: reveal(c.inputs.get("ports")) for c in containers(plan) if c.inputs.get("ports")}
    # A host with engines away from the gateway publishes its relay (TLS, keys checked) on its address, and nothing else.
    relays = [c for c in of_component(plan, "caddy") if c.name.startswith("relay-")]
    for relay in relays:
        host = raw["hosts"][relay.name.removeprefix("relay-")]
        assert [(p["internal"], p["external"], p["ip"]) for p in published.pop(relay.inputs["name"])] == [
            (8443, host.get("relayPort", 8443), host["address"])
        ]
    # Without an edge, the UIs are on the host's loopback only.
    for resource in containers(plan):
        if component(resource) in LOOPBACK_UIS and resource.inputs.get("ports"):
            assert [p["ip"] for p in reveal(resource.inputs["ports"])] == ["127.0.0.1"], resource.inputs["name"]
            # With an edge, nothing but the edge publishes: Grafana and the web UI go through it, Prometheus stays unpublished.
            assert "edge" not in raw, resource.inputs["name"]
            published.pop(resource.inputs["name"])
    if "edge" in raw:
        # The edge alone publishes (HTTPS, plus HTTP for ACME; HTTP alone with tls off); the replicas answer on the network.
        [edge] = [c for c in of_component(plan, "caddy") if c not in relays]
        assert list(published) == [edge.inputs["name"]], published
        tls = raw["edge"].get("tls", "internal")
        expected = {"off": [80], "internal": [443], "acme": [443, 80]}[tls]
        expected = [raw["edge"].get("httpsPort" if p == 443 else "httpPort", p) for p in expected]
        if "webui" in raw:  # Open WebUI on its own port of the edge
            expected.append(raw["webui"].get("port", 3000))
        assert [p["external"] for p in published[edge.inputs["name"]]] == expected
        return
    gateway = one(plan, "litellm")
    # Open WebUI, when the stack has it, is on this host's loopback only (checked with the other loopback UIs above).
    assert bool(of_component(plan, "open-webui")) == ("webui" in raw)
    assert list(published) == [gateway.inputs["name"]], published
    gateway_cfg = raw.get("gateway") or {}
    assert reveal(gateway.inputs["ports"]) == [
        {"internal": LITELLM_PORT, "external": gateway_cfg.get("port", LITELLM_PORT), "ip": gateway_cfg.get("bind", "127.0.0.1")}
    ]


def test_postgres_and_redis_publish_nothing(stack):
    _, plan = stack
    for name in ("postgres", "redis"):
        db = one(plan, name)
        assert not db.inputs.get("ports"), f"{name} publishes a port"
        assert db.inputs.get("networkMode") in (None, "", "bridge")


def test_every_container_is_on_the_stack_network_under_its_own_name(stack):
    _, plan = stack
    network = network_name(plan)
    for resource in containers(plan):
        # The instance label (the Docker name, but for a rolling gateway replica's generation suffix) is scoped by
        # the stack (`dev-ollama`); the alias the gateway uses is not.
        name = next(label["value"] for label in resource.inputs["labels"] if label["label"] == "llmstack.instance")
        assert resource.inputs["name"] == name or re.fullmatch(re.escape(name) + "-[0-9a-f]{8}", resource.inputs["name"]), name
        [attachment] = reveal(resource.inputs["networksAdvanced"])
        assert attachment["name"] == network and any(name.endswith("-" + alias) for alias in attachment["aliases"]), name


def test_no_container_is_privileged_or_on_the_host_network(stack):
    _, plan = stack
    for resource in containers(plan):
        inputs, name = resource.inputs, resource.inputs["name"]
        assert not inputs.get("privileged"), f"{name} runs privileged"
        assert inputs.get("networkMode") != "host", f"{name} is on the host network"
        assert inputs.get("pidMode") != "host", f"{name} shares the host's PID namespace"
        assert not inputs.get("capabilities"), f"{name} adds capabilities"
        assert not inputs.get("devices"), f"{name} maps host devices"


def test_ollama_has_no_auth_so_it_is_reachable_only_on_the_stack_network(stack):
    raw, plan = stack
    servers = of_component(plan, "ollama")
    assert len(servers) == (1 if raw.get("ollama") else 0)
    for server in servers:
        assert not server.inputs.get("ports")
        assert [n["name"] for n in reveal(server.inputs["networksAdvanced"])] == [network_name(plan)]
        assert server.inputs.get("networkMode") in (None, "", "bridge")


# --- auth ----------------------------------------------------------------------------------------


def test_redis_requires_its_password(stack):
    _, plan = stack
    redis, gateway = one(plan, "redis"), one(plan, "litellm")
    password = envs_of(redis).get("REDIS_PASSWORD")
    assert password, "Redis has no password"
    command = " ".join(redis.inputs["command"])
    assert '--requirepass "$REDIS_PASSWORD"' in command  # from the env, through a shell
    assert password not in command
    test = redis.inputs["healthcheck"]["tests"]
    assert test[0] == "CMD-SHELL" and '-a "$REDIS_PASSWORD"' in test[1]
    assert envs_of(gateway)["REDIS_PASSWORD"] == password
    gateway_config = yaml.safe_load(reveal(gateway.inputs["uploads"])[0]["content"])
    assert gateway_config["router_settings"]["redis_password"] == "os.environ/REDIS_PASSWORD"


def test_every_engine_requires_its_key_and_the_gateway_holds_it(stack):
    raw, plan = stack
    gateway = one(plan, "litellm")
    gateway_envs = envs_of(gateway)
    gateway_config = yaml.safe_load(reveal(gateway.inputs["uploads"])[0]["content"])
    key_env_of_base = {
        e["litellm_params"]["api_base"]: e["litellm_params"].get("api_key", "").removeprefix("os.environ/")
        for e in gateway_config["model_list"]
    }
    def count(block) -> int:  # one container per replica
        return len(block.get("replicas") or [None])

    expected = {
        "vllm": sum(count(entry) for entry in raw.get("vllm") or []),
        "infinity": count(raw["infinity"]) if "infinity" in raw else 0,
        "speaches": count(raw["speaches"]) if "speaches" in raw else 0,
    }
    for engine, key_env in ENGINE_KEY_ENVS.items():
        servers = of_component(plan, engine)
        assert len(servers) == expected[engine], engine
        for server in servers:
            key = envs_of(server).get(key_env)
            assert key, f"{server.inputs['name']} has no {key_env}"
            assert is_secret(server.inputs["envs"])
            [alias] = reveal(server.inputs["networksAdvanced"])[0]["aliases"]
            # Reached on the stack network by its alias, or through its host's relay at /<alias>/.
            gateway_env = next(env for base, env in key_env_of_base.items() if f"//{alias}:" in base or f"/{alias}/" in base + "/")
            assert gateway_env and gateway_envs[gateway_env] == key, f"the gateway does not hold the key of {alias}"
    # Ollama has no key: no model entry pointing at it carries one.
    for base, env in key_env_of_base.items():
        if "//ollama:" in base:
            assert env == ""


def test_every_secret_bearing_env_list_is_secret(stack):
    _, plan = stack
    for resource in containers(plan):
        secret_names = [n for n, v in envs_of(resource).items() if SECRET_ENV.search(n) and v]
        if secret_names:
            assert is_secret(resource.inputs["envs"]), f"{resource.inputs['name']} holds {secret_names} in a non-secret env list"


def test_each_secret_env_is_a_secret_item_and_only_those(stack):
    """`config render` shows plain envs item by item: each secret one must be its own secret item as sent."""
    _, plan = stack
    for resource in containers(plan):
        for item in resource.sent.get("envs") or []:
            name, value = reveal(item).split("=", 1)
            assert is_secret(item) == bool(SECRET_ENV.search(name) and value), f"{resource.inputs['name']}: {name}"


def test_no_secret_in_a_command_or_healthcheck(stack):
    _, plan = stack
    values = set(secret_values(plan))
    assert values
    for resource in containers(plan):
        spec = str(reveal(resource.inputs.get("command"))) + str(reveal(resource.inputs.get("healthcheck")))
        assert not any(v in spec for v in values), f"a secret is in the command or healthcheck of {resource.inputs['name']}"


# --- health --------------------------------------------------------------------------------------


def test_every_container_has_a_working_healthcheck_and_restarts(stack):
    _, plan = stack
    for resource in containers(plan):
        name, inputs = resource.inputs["name"], resource.inputs
        if component(resource) in WATCHED_WITHOUT_HEALTHCHECK:
            assert inputs.get("restart") == "unless-stopped", name
            continue
        health = inputs.get("healthcheck")
        assert health and health.get("tests"), f"{name} has no healthcheck"
        form, *args = health["tests"]
        assert form in ("CMD", "CMD-SHELL"), f"{name}: {form}"
        if form == "CMD":
            assert not SHELL_TOKENS & set(args), f"{name}: exec-form test with shell operators: {args}"
        else:
            assert len(args) == 1, f"{name}: CMD-SHELL takes one command string"
        assert args, f"{name}: empty test"
        conventions.duration_seconds(health["startPeriod"])
        assert health.get("interval") and health.get("timeout") and health.get("retries")
        assert inputs.get("restart") == "unless-stopped", name
        assert inputs.get("wait") is True, name
        assert inputs.get("waitTimeout", 0) > conventions.duration_seconds(health["startPeriod"]), name
        assert "healthcheck" in resource.replace_on_changes, f"{name}: a changed healthcheck would not apply"


def test_every_volume_is_retained_and_mounted(stack):
    _, plan = stack
    volumes = plan.of_type(VOLUME)
    assert volumes
    mounts = [m for c in containers(plan) for m in reveal(c.inputs.get("volumes") or [])]
    mounted = {m.get("volumeName") for m in mounts}
    for volume in volumes:
        assert volume.retain_on_delete, f"volume {volume.inputs['name']} is deleted with the stack"
        assert volume.inputs["name"] in mounted, f"volume {volume.inputs['name']} is mounted by no container"
    names = [v.inputs["name"] for v in volumes]
    assert len(names) == len(set(names))
    for mount in mounts:
        assert not mount.get("hostPath"), f"a host path is mounted: {mount}"
        assert mount.get("volumeName") in names, f"a mount uses an undeclared volume: {mount}"
    # Every stateful service keeps its data on a volume.
    for name in ("postgres", "redis", "ollama", "infinity", "speaches", "vllm"):
        for resource in of_component(plan, name):
            assert resource.inputs.get("volumes"), f"{resource.inputs['name']} keeps its state in the container"


def test_the_everything_stack_has_every_engine():
    plan = run_program(EVERYTHING, stack="everything", secrets=SECRETS)
    assert sorted(component(c) for c in containers(plan)) == sorted(
        ["vllm", "vllm", "ollama", "infinity", "speaches", "litellm", "postgres", "redis",
         "prometheus", "blackbox-exporter", "grafana", "dcgm-exporter", "open-webui"]
    )
