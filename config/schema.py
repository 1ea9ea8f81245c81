"""The stack config contract (namespace `llmstack`) as pydantic models: types, ranges and defaults of every key."""

import ipaddress
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Optional
from urllib.parse import urlparse

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator
from pydantic.alias_generators import to_camel

from components.litellm_config import DEFAULT_SETTINGS, ROUTING_STRATEGIES

from . import gpu_ids
from .secrets import SecretValue

FIX = ". Fix: "
# Docker container and volume names; model names become container names and network aliases.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
DURATION_PATTERN = r"^(\d+(h|m|s))+$"
# A prefix for Docker names: empty (no prefix), or what a Docker name may start with.
NAME_PREFIX_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,30})?$"
DOCKER_SCHEMES = ("unix", "ssh", "tcp", "npipe")



def problem(message: str, fix: str) -> ValueError:
    """A validation error whose text carries the fix, split out again when reported."""
    return ValueError(f"{message}{FIX}{fix}")


def _gpu_selection(value: Any) -> Any:
    """`all`, or a list of device ids (numbers accepted), as a list of strings (`["all"]` for all)."""
    if value is None:
        return None
    if value == "all":
        return ["all"]
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        raise problem(f"{value!r} is not a GPU selection", 'write `all` or a list of device ids such as ["0", "1"]')
    if isinstance(value, list):
        ids = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (str, int)) or not gpu_ids.is_device_id(str(item)):
                raise problem(f"{item!r} is not a GPU device id", 'list ids such as ["0", "1"], or write `all` alone')
            ids.append(str(item))
        if not ids:
            raise problem("the GPU list is empty", "list at least one device id, write `all`, or remove the key for CPU")
        if len(set(ids)) != len(ids):
            raise problem("a GPU id is listed twice", "list each device id once")
        return ids
    raise problem(f"{value!r} is not a GPU selection", 'write `all` or a list of device ids such as ["0", "1"]')


GpuSelection = Annotated[Optional[list[str]], BeforeValidator(_gpu_selection)]
ModelName = Annotated[str, Field(pattern=NAME_PATTERN)]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]


class Section(BaseModel):
    """A block of the stack file: camelCase keys, nothing unknown."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=False, frozen=True, arbitrary_types_allowed=True
    )


class Gpu(Section):
    id: str
    memory_gib: float = Field(alias="memoryGiB", gt=0, allow_inf_nan=False)

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        if not gpu_ids.is_device_id(value):
            raise problem(f"{value!r} is not a GPU device id", "write the index (0, 1, ...) or the UUID (GPU-...) that nvidia-smi -L shows")
        return value


class Host(Section):
    docker: str = "unix:///var/run/docker.sock"
    ssh_opts: list[str] = Field(default_factory=list)
    gpus: Optional[list[Gpu]] = None
    address: Optional[str] = None
    """Host name clients use to reach the gateway (default: the host of the Docker URL, or localhost)."""

    @field_validator("docker")
    @classmethod
    def _docker_url(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme not in DOCKER_SCHEMES:
            raise problem(
                f"{value!r} is not a Docker host URL",
                "use unix:///var/run/docker.sock, ssh://user@host or tcp://host:2376",
            )
        if url.scheme in ("ssh", "tcp") and not url.hostname:
            raise problem(f"{value!r} names no host", f"write {url.scheme}://user@host")
        if url.scheme == "unix" and not url.path:
            raise problem(f"{value!r} names no socket", "write unix:///var/run/docker.sock")
        return value

    @field_validator("gpus")
    @classmethod
    def _unique_ids(cls, value: Optional[list[Gpu]]) -> Optional[list[Gpu]]:
        ids = [g.id for g in value or []]
        if len(set(ids)) != len(ids):
            raise problem("a GPU id is listed twice in the inventory", "list each GPU once")
        return value

    def client_address(self) -> str:
        """Where clients reach a port published on this host."""
        if self.address:
            return self.address
        url = urlparse(self.docker)
        return url.hostname if url.scheme in ("ssh", "tcp") and url.hostname else "localhost"


class Network(Section):
    name: ModelName = "llm"
    subnet: Optional[str] = None

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError:
            raise problem(f"{value!r} is not a subnet", "write a CIDR block such as 192.168.0.0/24") from None


class Engine(Section):
    """What every engine block (a section, or one entry of a list section) has: where it runs and on which GPUs."""

    host: Optional[str] = None
    image: Optional[str] = None
    gpus: GpuSelection = None

    def model_names(self) -> list[tuple[str, tuple]]:
        """The model names this block declares, each with its location inside the block."""
        raise NotImplementedError

    def gateway_key_env(self) -> Optional[str]:
        """The gateway env that will hold this engine's key (None: the engine has no key)."""
        raise NotImplementedError


class SharedEngine(Engine):
    """An engine that serves every model of its section from one container and declares its GPU memory."""

    vram_gib: Optional[float] = Field(default=None, alias="vramGiB", gt=0, allow_inf_nan=False)

    def model_names(self) -> list[tuple[str, tuple]]:
        return [(m.name, ("models", i, "name")) for i, m in enumerate(getattr(self, "models"))]


class RateLimit(Section):
    rpm: Optional[int] = Field(default=None, ge=1)
    tpm: Optional[int] = Field(default=None, ge=1)


class Gateway(Section):
    host: Optional[str] = None
    image: Optional[str] = None
    postgres_image: Optional[str] = None
    redis_image: Optional[str] = None
    port: int = Field(default=4000, ge=1, le=65535)
    bind: str = "127.0.0.1"
    routing_strategy: Literal[ROUTING_STRATEGIES] = DEFAULT_SETTINGS["routing_strategy"]  # type: ignore[valid-type]
    num_retries: int = Field(default=DEFAULT_SETTINGS["num_retries"], ge=0, le=20)
    request_timeout: int = Field(default=DEFAULT_SETTINGS["request_timeout"], ge=1)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    allowed_fails: int = Field(default=DEFAULT_SETTINGS["allowed_fails"], ge=0)
    cooldown_time: int = Field(default=DEFAULT_SETTINGS["cooldown_time"], ge=0)
    drop_params: bool = DEFAULT_SETTINGS["drop_params"]
    num_workers: Optional[int] = Field(default=None, ge=1, le=64)

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise problem(f"{value!r} is not an IP address", "write 127.0.0.1 (this host only) or 0.0.0.0 (all interfaces)") from None


def _default_hosts() -> dict[str, Host]:
    return {"local": Host()}


class StackConfig(Section):
    """One stack's whole `llmstack` config: these keys, plus one field per registered engine section.

    Validate with `config.registry.stack_model()`, the subclass that carries the engine sections."""

    _file_order: tuple[str, ...] = PrivateAttr(default=())
    """The top-level keys in the order the stack file gives them (messages follow the file): see in_file_order."""

    def in_file_order(self, keys: list[str]) -> list[str]:
        """Keys sorted as the stack file gives them (keys it leaves out last, in the given order)."""
        order = {key: i for i, key in enumerate(self._file_order)}
        return sorted(keys, key=lambda key: order.get(key, len(order)))

    def with_file_order(self, keys: Iterable[str]) -> "StackConfig":
        """This config, knowing the order of the stack file's top-level keys."""
        self._file_order = tuple(keys)
        return self

    hosts: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Host] = Field(default_factory=_default_hosts, min_length=1)
    network: Network = Network()
    gateway: Gateway = Gateway()
    name_prefix: Optional[Annotated[str, Field(pattern=NAME_PREFIX_PATTERN)]] = None
    """Prefix of every Docker name of the stack (containers, volumes, network); default: the stack's name."""
    master_key: Optional[SecretValue] = None
    hf_token: Optional[SecretValue] = None


def resolve_host(stack: StackConfig, host: Optional[str]) -> str:
    """The host a service runs on: the one named, else the only one."""
    return host if host is not None else sorted(stack.hosts)[0]
