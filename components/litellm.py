"""LiteLLMProxy: the OpenAI-compatible gateway in front of every engine, with its PostgreSQL and Redis."""

from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_docker as docker

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
# Plain envs: never fetch the price map from the internet (GPU hosts are often offline).
PLAIN_ENVS = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
HOSTNAME = "litellm"


def hostnames() -> tuple[str, str, str]:
    """The network aliases of the gateway's containers: LiteLLM, its PostgreSQL and its Redis (their Docker names after a prefix)."""
    return HOSTNAME, f"{HOSTNAME}-postgres", f"{HOSTNAME}-redis"


class LiteLLMProxyArgs(TypedDict):
    """Inputs of a LiteLLMProxy."""

    network_name: pulumi.Input[str]
    """Docker network shared with the engines."""
    models: pulumi.Input[list[LiteLLMModelEntry]]
    """The model entries the gateway routes to (from the engine components' `model_entries`)."""
    backend_keys: NotRequired[pulumi.Input[dict[str, str]]]
    """Env var name -> engine API key (secret), for the entries' `api_key_env` references."""
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


def _gateway_envs(fixed: dict[str, pulumi.Input[str]], backend_keys: pulumi.Input[dict[str, str]]) -> pulumi.Output[list[str]]:
    def merge(resolved: list) -> list[str]:
        fixed_values, keys = resolved
        clash = set(fixed_values) & set(keys)
        if clash:
            raise ValueError(f"backend key env names clash with the gateway's own envs: {sorted(clash)}")
        merged = {**PLAIN_ENVS, **fixed_values, **keys}
        return [f"{name}={merged[name]}" for name in sorted(merged)]

    return pulumi.Output.secret(pulumi.Output.all(fixed, backend_keys).apply(merge))


class LiteLLMProxy(pulumi.ComponentResource):
    """The gateway: LiteLLM with a generated config file, PostgreSQL and Redis, each healthy before `pulumi up` returns."""

    internal_url: pulumi.Output[str]
    """The gateway's URL on the Docker network, e.g. `http://litellm:4000`."""
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

        settings = args.get("settings") or {}
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
        )
        self.container = container.service_container(
            name,
            parent=self,
            container_name=container.docker_name(prefix, litellm_host),
            image=container.pinned_image(f"{name}-image", args.get("image") or IMAGE, self),
            network_name=network,
            aliases=[litellm_host],
            command=command,
            envs=envs,
            health=container.healthcheck(HEALTH_TEST, HEALTH_START_PERIOD),
            component="litellm",
            ports=[docker.ContainerPortArgs(internal=PORT, external=port, ip=args.get("bind_address") or "127.0.0.1")],
            uploads=[docker.ContainerUploadArgs(file=CONFIG_PATH, content=self.config_yaml)],
            # Prisma migrations at start exit when the database is not up yet.
            depends_on=[db, cache, *container.depends_on_of(opts)],
        )
        self.internal_url = pulumi.Output.from_input(f"http://{litellm_host}:{PORT}")
        self.port = pulumi.Output.from_input(port)
        self.master_key = master_key
        self.model_names = pulumi.Output.from_input(args["models"]).apply(
            lambda models: sorted({m["model_name"] for m in models})
        )
        self.register_outputs(
            {
                "internal_url": self.internal_url,
                "port": self.port,
                "master_key": self.master_key,
                "config_yaml": self.config_yaml,
                "model_names": self.model_names,
            }
        )
