"""The stack config contract (namespace `llmstack`) as pydantic models: types, ranges and defaults of every key."""

import ipaddress
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Optional, Union
from urllib.parse import urlparse

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator
from pydantic.alias_generators import to_camel

from components.caddy import RELAY_PORT
from components.litellm import MAX_REPLICAS
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
MAX_ENGINE_REPLICAS = 16



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
    """Host name clients use to reach the gateway (default: the host of the Docker URL, or localhost); on a host
    that runs engines but not the gateway, where the gateway reaches its relay (the relay's port is bound to it
    when it is an IP address)."""
    relay_port: int = Field(default=RELAY_PORT, ge=1, le=65535)
    """The TLS port of the relay on a host that runs engines but not the gateway; open it to the gateway's host."""

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


class Replica(Section):
    """One copy of an engine block: its own container and its own LiteLLM deployment under the same model names."""

    host: Optional[str] = None
    gpus: GpuSelection = None


class Engine(Section):
    """What every engine block (a section, or one entry of a list section) has: where it runs and on which GPUs."""

    host: Optional[str] = None
    image: Optional[str] = None
    gpus: GpuSelection = None
    replicas: Optional[list[Replica]] = Field(default=None, min_length=1, max_length=MAX_ENGINE_REPLICAS)
    """Instead of `host` and `gpus`: one container per replica, each on its host and GPUs (config/placement.py)."""
    _replica: str = PrivateAttr(default="")
    """Set on the copy of a block that stands for one of its replicas: the suffix of its names (see config/placement.py)."""

    @property
    def replica(self) -> str:
        """The replica suffix of this placed block (`gpu-02`), or "" for the block's plain names."""
        return self._replica

    def base_hostname(self) -> str:
        """The engine's network alias without a replica suffix: its container name (`ollama`) or model name (vLLM)."""
        raise NotImplementedError

    def hostname(self) -> str:
        """The network alias (and, after the stack's prefix, the container name) of this placed block: `qwen3-gpu-02`."""
        return f"{self.base_hostname()}-{self._replica}" if self._replica else self.base_hostname()

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
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    """LiteLLM containers sharing PostgreSQL and Redis; more than one needs `llmstack:edge`, which balances over them."""

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        return _ip_address(value)


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise problem(f"{value!r} is not an IP address", "write 127.0.0.1 (this host only) or 0.0.0.0 (all interfaces)") from None


class Edge(Section):
    """The HTTPS reverse proxy in front of the gateway replicas: with it on, it alone publishes ports."""

    tls: Literal["internal", "acme", "off"] = "internal"
    domain: Optional[str] = None
    """The name (or address) clients use; `acme` needs a DNS name; `internal` defaults to the gateway host's address."""
    email: Optional[str] = None
    """ACME account email (`tls: acme`)."""
    https_port: int = Field(default=443, ge=1, le=65535)
    http_port: int = Field(default=80, ge=1, le=65535)
    bind: str = "0.0.0.0"
    image: Optional[str] = None

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        return _ip_address(value)


PROMETHEUS_DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"


def _prometheus_duration(value: Any) -> Any:
    """A Prometheus duration (`15s`, `2m`, `15d`, `1y`), longer than zero."""
    if not isinstance(value, str) or not re.fullmatch(PROMETHEUS_DURATION, value):
        raise problem(f"{value!r} is not a Prometheus duration", "write a number and a unit (ms, s, m, h, d, w, y) such as 15s, 5m or 15d")
    if not any(int(n) for n in re.findall(r"[0-9]+", value)):
        raise problem(f"{value!r} is zero", "write a duration longer than zero, such as 15s")
    return value


def _ratio(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) <= 1:
        raise problem(f"{value!r} is not a ratio", "write a number in (0, 1] such as 0.9 (for 90 %)")
    return float(value)


PrometheusDuration = Annotated[str, BeforeValidator(_prometheus_duration)]
Ratio = Annotated[float, BeforeValidator(_ratio)]
HostPort = Annotated[Optional[int], Field(ge=1, le=65535)]


class AlertLimits(Section):
    """Limits of the alert rules (components/alert_rules.py); a key left out keeps the rule's default."""

    target_down_for: Optional[PrometheusDuration] = None
    kv_cache_ratio: Optional[Ratio] = None
    kv_cache_for: Optional[PrometheusDuration] = None
    gpu_memory_ratio: Optional[Ratio] = None
    gpu_memory_for: Optional[PrometheusDuration] = None
    failure_ratio: Optional[Ratio] = None
    failure_for: Optional[PrometheusDuration] = None


class PrometheusSettings(Section):
    port: HostPort = 9090
    """Published on 127.0.0.1 of the gateway's host; null: not published."""
    image: Optional[str] = None
    blackbox_image: Optional[str] = None


class GrafanaSettings(Section):
    port: HostPort = 3001  # Open WebUI takes 3000
    """Published on 127.0.0.1 of the gateway's host; null: not published."""
    image: Optional[str] = None


class GpuExporterSettings(Section):
    enabled: bool = True
    image: Optional[str] = None


class Monitoring(Section):
    """`llmstack:monitoring`: Prometheus and Grafana on the gateway's host, a GPU exporter on each GPU host."""

    enabled: bool = True
    retention: PrometheusDuration = "15d"
    scrape_interval: PrometheusDuration = "15s"
    prometheus: PrometheusSettings = PrometheusSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    gpu_exporter: GpuExporterSettings = GpuExporterSettings()
    alerts: AlertLimits = AlertLimits()


def _monitoring_shorthand(value: Any) -> Any:
    """`llmstack:monitoring: true` (or false) for the defaults."""
    if isinstance(value, bool):
        return {"enabled": value}
    if value is not None and not isinstance(value, dict):
        raise problem(f"{value!r} is not a monitoring setting", "write true, false, or a mapping such as {retention: 30d}")
    return value


def _model_or_off(value: Any) -> Any:
    """A model name, or `false` for a feature turned off."""
    if value is None or value is False:
        return value
    if isinstance(value, str) and value.strip():
        return value
    raise problem(f"{value!r} is not a model name", "name a model of this stack, or write false to turn the feature off")


ModelOrOff = Annotated[Optional[Union[str, bool]], BeforeValidator(_model_or_off)]


class WebUI(Section):
    """`llmstack:webui`: Open WebUI on the gateway's host; every model defaults to the stack's first on its route."""

    image: Optional[str] = None
    port: int = Field(default=3000, ge=1, le=65535)
    url: Optional[str] = None
    default_model: ModelOrOff = None
    embedding_model: ModelOrOff = None
    embedding_batch_size: int = Field(default=1, ge=1, le=1024)
    reranking_model: ModelOrOff = None
    transcription_model: ModelOrOff = None
    speech_model: ModelOrOff = None
    speech_voice: Optional[str] = Field(default=None, min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (urlparse(value).scheme not in ("http", "https") or not urlparse(value).hostname):
            raise problem(f"{value!r} is not a URL", "write the address users open, e.g. https://chat.example.com")
        return value


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
    edge: Optional[Edge] = None
    name_prefix: Optional[Annotated[str, Field(pattern=NAME_PREFIX_PATTERN)]] = None
    """Prefix of every Docker name of the stack (containers, volumes, network); default: the stack's name."""
    master_key: Optional[SecretValue] = None
    hf_token: Optional[SecretValue] = None
    monitoring: Annotated[Optional[Monitoring], BeforeValidator(_monitoring_shorthand)] = None
    webui: Optional[WebUI] = None


def resolve_host(stack: StackConfig, host: Optional[str]) -> str:
    """The host a service runs on: the one named, else the only one."""
    return host if host is not None else sorted(stack.hosts)[0]
