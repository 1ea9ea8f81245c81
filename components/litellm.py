"""LiteLLMProxy: the OpenAI-compatible gateway in front of every engine, with its PostgreSQL and Redis."""

import hashlib
from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from . import container, postgres, redis
from .litellm_config import (
    DATABASE_URL_ENV,
    MASTER_KEY_ENV,
    REDIS_PASSWORD_ENV,
    GatewaySettings,
    render_litellm_config,
)
from .model_entry import LiteLLMModelEntry

__all__ = ["LiteLLMProxy", "LiteLLMProxyArgs"]

# Facts about the LiteLLM image (docs/engine-facts.md); the contract test pins the same release from PyPI.
IMAGE = "ghcr.io/berriai/litellm:v1.108.7"
PORT = 4000
CONFIG_PATH = "/app/config.yaml"
# The image has neither curl nor wget; its Python does the liveliness probe (no auth needed there).
HEALTH_TEST = [
    "CMD",
    "python3",
    "-c",
    f"import urllib.request; urllib.request.urlopen('http://localhost:{PORT}/health/liveliness', timeout=5)",
]
# Prisma migrations run at start.
HEALTH_START_PERIOD = "180s"
SALT_KEY_ENV = "LITELLM_SALT_KEY"
MASTER_KEY_PREFIX = "sk-"
SECRET_LENGTH = 48
# Cheaper streaming (issue 15; benchmarks/chunk_cost.py measures each candidate against the settings before): LiteLLM
# 1.108.7 sets Python's garbage-collector thresholds from PYTHON_GC_THRESHOLD when the proxy starts, in every worker
# (litellm/proxy/common_utils/debug_utils.py). Each streamed chunk allocates a few dozen short-lived objects (pydantic
# stream objects, dicts); collecting the youngest generation every 5000 allocations instead of 700 (and the oldest
# one a tenth as often) cost less CPU per chunk in every run, for a few MB more memory; nothing else changes.
STREAMING_ENVS = {"PYTHON_GC_THRESHOLD": "5000,20,100"}
# Plain envs: never fetch the price map from the internet (GPU hosts are often offline).
PLAIN_ENVS = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **STREAMING_ENVS}
HOSTNAME = "litellm"
# LiteLLM 1.108.7 (llms/custom_httpx/http_handler.py get_ssl_configuration) makes its TLS context from the file
# SSL_CERT_FILE names, instead of certifi's bundle, for every engine call.
SSL_CERT_FILE_ENV = "SSL_CERT_FILE"
CA_CERT_PATH = "/etc/llmstack/stack-ca.pem"


MAX_REPLICAS = 16
# A replaced replica behind a proxy gets this long, once stopped, to finish the requests and streams it serves
# (uvicorn stops accepting and waits for them); a longer generation is cut.
DRAIN_SECONDS = 120
GENERATION_BYTES = 4


def hostnames() -> tuple[str, str, str]:
    """The network aliases of the gateway's containers: LiteLLM, its PostgreSQL and its Redis (their Docker names after a prefix)."""
    return HOSTNAME, f"{HOSTNAME}-postgres", f"{HOSTNAME}-redis"


def replica_hostnames() -> tuple[str, ...]:
    """The aliases replicas may take (`litellm-1` ...), besides the `litellm` they share."""
    return tuple(f"{HOSTNAME}-{i}" for i in range(1, MAX_REPLICAS + 1))


class LiteLLMProxyArgs(TypedDict):
    """Inputs of a LiteLLMProxy."""

    network_name: pulumi.Input[str]
    """Docker network shared with the engines."""
    models: pulumi.Input[list[LiteLLMModelEntry]]
    """The model entries the gateway routes to (from the engine components' `model_entries`)."""
    backend_keys: NotRequired[pulumi.Input[dict[str, str]]]
    """Env var name -> engine API key (secret), for the entries' `api_key_env` references (a plain mapping of
    names to keys keeps the gateway's other envs readable in a plan; an Output hides the whole env list)."""
    master_key: NotRequired[pulumi.Input[str]]
    """Admin key of the gateway (secret, starts with `sk-`); generated and kept in state when absent."""
    settings: NotRequired[GatewaySettings]
    """Routing strategy, retries, timeout, fallbacks, rate limits, cooldown, drop_params."""
    port: NotRequired[int]
    """Host port the gateway is published on (default 4000)."""
    bind_address: NotRequired[str]
    """Host address the port is published on (default 127.0.0.1: only this host)."""
    num_workers: NotRequired[int]
    """LiteLLM worker processes."""
    image: NotRequired[str]
    """LiteLLM image override."""
    postgres_image: NotRequired[str]
    """PostgreSQL image override (keep the major version: the data volume is tied to it)."""
    redis_image: NotRequired[str]
    """Redis image override."""
    name_prefix: NotRequired[str]
    """Prefix of the container and volume names (e.g. the stack name: `prod-litellm`); the network aliases stay
    `litellm`, `litellm-postgres` and `litellm-redis`."""
    replicas: NotRequired[int]
    """LiteLLM containers sharing PostgreSQL and Redis (default 1); each also answers at `litellm-<n>` so a proxy
    in front (the edge) can balance over them, and each is created once the one before it is healthy."""
    publish: NotRequired[bool]
    """Publish the port on the host (default true); false when a proxy on the network (the edge) publishes instead."""
    ca_cert: NotRequired[pulumi.Input[str]]
    """A CA certificate (PEM) the gateway trusts, and only it, for engines reached over TLS (relays on other hosts);
    uploaded and named by SSL_CERT_FILE, which LiteLLM 1.108.7 uses instead of certifi's bundle."""
    metrics_port: NotRequired[int]
    """Turn on LiteLLM's Prometheus metrics, served without a key on this container port (4001 is usual) for
    Prometheus on the stack's network; never published on the host."""


def _gateway_envs(
    fixed: dict[str, pulumi.Input[str]], backend_keys: pulumi.Input[dict[str, str]], plain: Optional[dict[str, str]] = None
) -> pulumi.Input[list[pulumi.Input[str]]]:
    plain_envs = {**PLAIN_ENVS, **(plain or {})}
    if isinstance(backend_keys, dict):
        # The key names are known now: each secret env is its own secret item, the plain ones stay readable in a plan.
        clash = (set(fixed) | set(plain_envs)) & set(backend_keys)
        if clash:
            raise ValueError(f"backend key env names clash with the gateway's own envs: {sorted(clash)}")
        return container.container_envs(plain_envs, {**fixed, **backend_keys})

    def merge(resolved: list) -> list[str]:
        fixed_values, keys = resolved
        clash = set(fixed_values) & set(keys)
        if clash:
            raise ValueError(f"backend key env names clash with the gateway's own envs: {sorted(clash)}")
        merged = {**plain_envs, **fixed_values, **keys}
        return [f"{name}={merged[name]}" for name in sorted(merged)]

    return pulumi.Output.secret(pulumi.Output.all(fixed, backend_keys).apply(merge))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _generation(
    resource: str,
    parent: pulumi.Resource,
    uploads: list[docker.ContainerUploadArgs],
    image: docker.RemoteImage,
    command: list[str],
    envs: pulumi.Input[list[pulumi.Input[str]]],
    network: pulumi.Input[str],
) -> pulumi.Output[str]:
    """A short id that changes with every input of a replica that varies with the stack (uploaded files, image,
    command, envs, network), so its replacement has a name of its own; kept in state otherwise."""
    # Digests keep the state small; the envs' digest stays a secret like the envs.
    env_digest = pulumi.Output.from_input(envs).apply(lambda items: _digest("\n".join(items)))
    files = pulumi.Output.all(*[u.file for u in uploads], *[u.content for u in uploads]).apply(lambda parts: _digest("\n".join(parts)))
    keepers = {"uploads": files, "image": image.image_id, "command": " ".join(command), "envs": env_digest, "network": network}
    return random.RandomId(f"{resource}-generation", byte_length=GENERATION_BYTES, keepers=keepers, opts=pulumi.ResourceOptions(parent=parent)).hex


def _metrics_settings(metrics_port: int):  # -> litellm_metrics.GatewayMetricsSettings
    # Imported here: litellm_metrics reads this module's PORT.
    from .litellm_metrics import gateway_metrics_settings

    return gateway_metrics_settings(metrics_port)


class LiteLLMProxy(pulumi.ComponentResource):
    """The gateway: LiteLLM with a generated config file, PostgreSQL and Redis, each healthy before `pulumi up` returns."""

    internal_url: pulumi.Output[str]
    """The gateway's URL on the Docker network, e.g. `http://litellm:4000` (every replica answers at `litellm`)."""
    upstreams: pulumi.Output[list[str]]
    """`host:port` of each replica on the Docker network, for a proxy that balances over them."""
    port: pulumi.Output[int]
    """Host port the gateway is published on."""
    master_key: pulumi.Output[str]
    """Admin key of the gateway (secret)."""
    config_yaml: pulumi.Output[str]
    """The LiteLLM config file uploaded into the container (holds no secret)."""
    model_names: pulumi.Output[list[str]]
    """Names of every model the gateway serves."""

    def __init__(self, name: str, args: LiteLLMProxyArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:LiteLLMProxy", name, {}, opts)
        prefix = args.get("name_prefix")
        network = args["network_name"]
        port = int(args.get("port") or PORT)

        master_key = args.get("master_key")
        if master_key is None:
            master_key = pulumi.Output.concat(MASTER_KEY_PREFIX, container.generated_secret(f"{name}-master-key", self, length=SECRET_LENGTH))
        master_key = pulumi.Output.secret(master_key)
        salt_key = container.generated_secret(f"{name}-salt-key", self, length=SECRET_LENGTH)
        pg_password = container.generated_secret(f"{name}-postgres-password", self, length=SECRET_LENGTH)
        redis_password = container.generated_secret(f"{name}-redis-password", self, length=SECRET_LENGTH)

        litellm_host, pg_name, redis_name = hostnames()
        pg_volume = container.retained_volume(
            f"{name}-postgres-data", container.docker_name(prefix, f"{pg_name}-data"), "postgres", self
        )
        db = container.service_container(
            f"{name}-postgres",
            parent=self,
            container_name=container.docker_name(prefix, pg_name),
            image=container.pinned_image(f"{name}-postgres-image", args.get("postgres_image") or postgres.IMAGE, self),
            network_name=network,
            aliases=[pg_name],
            command=[],
            envs=container.container_envs(
                {"POSTGRES_USER": postgres.USER, "POSTGRES_DB": postgres.DATABASE},
                {"POSTGRES_PASSWORD": pg_password},
            ),
            health=container.healthcheck(postgres.health_test(), postgres.HEALTH_START_PERIOD),
            component="postgres",
            volumes=[docker.ContainerVolumeArgs(volume_name=pg_volume.name, container_path=postgres.DATA_PATH)],
        )
        redis_volume = container.retained_volume(
            f"{name}-redis-data", container.docker_name(prefix, f"{redis_name}-data"), "redis", self
        )
        cache = container.service_container(
            f"{name}-redis",
            parent=self,
            container_name=container.docker_name(prefix, redis_name),
            image=container.pinned_image(f"{name}-redis-image", args.get("redis_image") or redis.IMAGE, self),
            network_name=network,
            aliases=[redis_name],
            command=redis.COMMAND,
            envs=container.container_envs({}, {REDIS_PASSWORD_ENV: redis_password}),
            health=container.healthcheck(redis.HEALTH_TEST, redis.HEALTH_START_PERIOD),
            component="redis",
            volumes=[docker.ContainerVolumeArgs(volume_name=redis_volume.name, container_path=redis.DATA_PATH)],
        )

        settings: GatewaySettings = dict(args.get("settings") or {})  # type: ignore[assignment]
        metrics_envs: dict[str, str] = {}
        if args.get("metrics_port"):
            metrics = _metrics_settings(int(args["metrics_port"]))
            settings["callbacks"] = [*settings.get("callbacks", []), *metrics["litellm_settings"]["callbacks"]]
            metrics_envs = metrics["envs"]
        self.config_yaml = pulumi.Output.from_input(args["models"]).apply(
            lambda models: render_litellm_config(models, settings, {"host": redis_name, "port": redis.PORT})
        )
        command = ["--config", CONFIG_PATH, "--port", str(PORT)]
        if args.get("num_workers"):
            command += ["--num_workers", str(int(args["num_workers"]))]
        envs = _gateway_envs(
            {
                MASTER_KEY_ENV: master_key,
                SALT_KEY_ENV: salt_key,
                DATABASE_URL_ENV: postgres.database_url(pg_name, pg_password),
                REDIS_PASSWORD_ENV: redis_password,
            },
            args.get("backend_keys") or {},
            {**metrics_envs, **({SSL_CERT_FILE_ENV: CA_CERT_PATH} if args.get("ca_cert") is not None else {})},
        )
        image = container.pinned_image(f"{name}-image", args.get("image") or IMAGE, self)
        uploads = [docker.ContainerUploadArgs(file=CONFIG_PATH, content=self.config_yaml)]
        if args.get("ca_cert") is not None:
            uploads.append(docker.ContainerUploadArgs(file=CA_CERT_PATH, content=args["ca_cert"]))
        replicas = int(args.get("replicas") or 1)
        publish = args.get("publish", True)
        if replicas > 1 and publish:
            raise ValueError("several replicas cannot share one published port: set publish to false and put a proxy in front")
        self.replicas: list[docker.Container] = []
        upstreams = []
        for index in range(1, replicas + 1):
            # One replica keeps the names it always had; with several, each also has its own alias.
            hostname = litellm_host if replicas == 1 else f"{litellm_host}-{index}"
            upstreams.append(f"{hostname}:{PORT}")
            resource = name if index == 1 else f"{name}-{index}"
            instance = container.docker_name(prefix, litellm_host if index == 1 else hostname)
            # Behind a proxy, a replica is replaced by rolling: the new container (a new name: the old one still
            # runs) is created and healthy before the next replica's turn, and the old ones go at the end.
            container_name: pulumi.Input[str] = instance
            if not publish:
                container_name = pulumi.Output.concat(instance, "-", _generation(resource, self, uploads, image, command, envs, network))
            self.replicas.append(
                container.service_container(
                    resource,
                    parent=self,
                    container_name=container_name,
                    instance=instance,
                    create_before_delete=not publish,
                    drain_seconds=None if publish else DRAIN_SECONDS,
                    image=image,
                    network_name=network,
                    aliases=[litellm_host] if replicas == 1 else [litellm_host, hostname],
                    command=command,
                    envs=envs,
                    health=container.healthcheck(HEALTH_TEST, HEALTH_START_PERIOD),
                    component="litellm",
                    ports=[docker.ContainerPortArgs(internal=PORT, external=port, ip=args.get("bind_address") or "127.0.0.1")]
                    if publish
                    else (),
                    uploads=uploads,
                    # Prisma migrations at start exit when the database is not up yet, and run once: a replica is
                    # created after the one before it is healthy (how replacements roll is not settled yet).
                    depends_on=[db, cache, *self.replicas[-1:], *container.depends_on_of(opts)],
                )
            )
        self.container = self.replicas[0]
        self.upstreams = pulumi.Output.from_input(upstreams)
        self.internal_url = pulumi.Output.from_input(f"http://{litellm_host}:{PORT}")
        self.port = pulumi.Output.from_input(port)
        self.master_key = master_key
        self.model_names = pulumi.Output.from_input(args["models"]).apply(
            lambda models: sorted({m["model_name"] for m in models})
        )
        self.register_outputs(
            {
                "internal_url": self.internal_url,
                "upstreams": self.upstreams,
                "port": self.port,
                "master_key": self.master_key,
                "config_yaml": self.config_yaml,
                "model_names": self.model_names,
            }
        )
