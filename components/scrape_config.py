"""prometheus.yml and blackbox.yml generated from a plain list of scrape targets, byte for byte stable.

Engines with /metrics are scraped; Ollama and Speaches have none, so blackbox_exporter probes their
health route and Prometheus scrapes the probe (probe_success). Only syntax that both Prometheus 2.42
(Debian's promtool, which checks it here) and 3.x (the image) accept: no `fallback_scrape_protocol`
(3.x only; every target here sends a proper text/plain Content-Type), `authorization` and `tls_config`
rather than the removed `bearer_token_file`, no feature flags."""

import re
from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict

import yaml

from .litellm_metrics import METRICS_PATH as GATEWAY_METRICS_PATH
from .metrics_catalog import ENGINES, GATEWAY, GPU_EXPORTER, INFINITY, OLLAMA, PROBED_ENGINES, SPEACHES, VLLM

__all__ = ["ScrapeTarget"]

# Where the Prometheus and blackbox containers find the files the components upload.
CONFIG_DIR = "/etc/prometheus"
CONFIG_FILE = f"{CONFIG_DIR}/prometheus.yml"
RULES_DIR = f"{CONFIG_DIR}/rules"
BLACKBOX_CONFIG_FILE = "/etc/blackbox_exporter/config.yml"
BLACKBOX_PORT = 9115
# What each engine answers on when no path is given: /metrics, or for probed engines a route that
# answers 200 without side effects (Ollama: /api/version; Speaches 0.8.3: /health, which needs the
# bearer token when API_KEY is set).
DEFAULT_PATHS = {GATEWAY: GATEWAY_METRICS_PATH, VLLM: "/metrics", INFINITY: "/metrics", GPU_EXPORTER: "/metrics",
                 OLLAMA: "/api/version", SPEACHES: "/health"}
TARGET_LABELS = ("engine", "host", "model", "replica")
DEFAULT_SCRAPE_INTERVAL = "15s"
DEFAULT_EVALUATION_INTERVAL = "15s"
PROBE_TIMEOUT = "10s"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


class ScrapeTarget(TypedDict):
    """One thing Prometheus watches: an engine container (or replica), the gateway, or a GPU exporter."""

    engine: str
    """`litellm`, `vllm`, `infinity`, `dcgm` (scraped) or `ollama`, `speaches` (probed)."""
    model: str
    """The model name clients use; for the gateway and GPU exporters, a name for the thing (`gateway`, `gpus`)."""
    host: str
    """The stack's host name (under `llmstack:hosts`) the container runs on."""
    replica: str
    """Which replica of the model (`0`, `1`, ...); `0` when there is one."""
    address: str
    """`host:port` Prometheus connects to: the container on the stack network, or a relay."""
    scheme: NotRequired[str]
    """`http` (default) or `https` (through a relay)."""
    path: NotRequired[str]
    """Metrics path, or for a probed engine the health path (default per engine); a relay's prefix goes here."""
    bearer_token: NotRequired[str]
    """Name of a credential (given to the Prometheus component as a secret) sent as `Authorization: Bearer`."""
    tls_ca: NotRequired[str]
    """Name of a CA certificate (given to the Prometheus component) that signs the relay's certificate."""
    server_name: NotRequired[str]
    """TLS server name to check in the relay's certificate, when it differs from the address' host."""


def credential_file(name: str, config_dir: str = CONFIG_DIR) -> str:
    """Where a named credential is uploaded in the Prometheus and blackbox containers."""
    return f"{config_dir}/credentials/{name}"


def ca_file(name: str, config_dir: str = CONFIG_DIR) -> str:
    """Where a named CA certificate is uploaded in the Prometheus and blackbox containers."""
    return f"{config_dir}/ca/{name}.pem"


def job_name(target: ScrapeTarget) -> str:
    """A unique, readable job per target: each may need its own credentials and TLS settings."""
    return f"{target['engine']}/{target['host']}/{target['model']}/{target['replica']}"


def probe_module(target: ScrapeTarget) -> str:
    """The blackbox module that probes this target (one per target: credentials and CAs differ)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{target['engine']}_{target['host']}_{target['model']}_{target['replica']}")


def is_probed(target: ScrapeTarget) -> bool:
    return target["engine"] in PROBED_ENGINES


def check_targets(targets: Sequence[ScrapeTarget]) -> None:
    """Refuse targets Prometheus would refuse or silently merge, naming the target and the field."""
    seen: set[str] = set()
    for index, target in enumerate(targets):
        where = f"scrape target {index} ({target.get('engine')}/{target.get('model')})"
        for key in ("engine", "model", "host", "replica", "address"):
            if not isinstance(target.get(key), str) or not target.get(key):
                raise ValueError(f"{where}: `{key}` must be a non-empty string")
        if target["engine"] not in ENGINES:
            raise ValueError(f"{where}: unknown engine {target['engine']!r}; one of {', '.join(ENGINES)}")
        for key in ("model", "host", "replica"):
            if not _NAME.match(target[key]):
                raise ValueError(f"{where}: `{key}` {target[key]!r} may hold only letters, digits, `_`, `.` and `-`")
        if "/" in target["address"] or ":" not in target["address"]:
            raise ValueError(f"{where}: `address` must be host:port, got {target['address']!r}")
        scheme = target.get("scheme", "http")
        if scheme not in ("http", "https"):
            raise ValueError(f"{where}: `scheme` must be http or https, got {scheme!r}")
        path = target.get("path", DEFAULT_PATHS[target["engine"]])
        if not path.startswith("/"):
            raise ValueError(f"{where}: `path` must start with /, got {path!r}")
        for key in ("bearer_token", "tls_ca"):
            if key in target and not _NAME.match(target[key]):  # type: ignore[literal-required]
                raise ValueError(f"{where}: `{key}` must name a credential (letters, digits, `_`, `.`, `-`)")
        if ("tls_ca" in target or "server_name" in target) and scheme != "https":
            raise ValueError(f"{where}: `tls_ca`/`server_name` need scheme https")
        name = job_name(target)
        if name in seen:
            raise ValueError(f"{where}: two targets for {name}: engine, host, model and replica must differ")
        seen.add(name)


def _check_duration(name: str, value: str) -> None:
    if not _DURATION.match(value):
        raise ValueError(f"{name} must be a Prometheus duration such as 15s or 1m, got {value!r}")


def _client_settings(target: ScrapeTarget, config_dir: str) -> dict:
    """Authorization and TLS settings, in the shape both scrape configs and blackbox modules take."""
    settings: dict = {}
    if "bearer_token" in target:
        settings["authorization"] = {"type": "Bearer", "credentials_file": credential_file(target["bearer_token"], config_dir)}
    tls: dict = {}
    if "tls_ca" in target:
        tls["ca_file"] = ca_file(target["tls_ca"], config_dir)
    if "server_name" in target:
        tls["server_name"] = target["server_name"]
    if tls:
        settings["tls_config"] = tls
    return settings


def _labels(target: ScrapeTarget) -> dict[str, str]:
    return {label: target[label] for label in TARGET_LABELS}  # type: ignore[literal-required]


def _scrape_job(target: ScrapeTarget, config_dir: str) -> dict:
    return {
        "job_name": job_name(target),
        "scheme": target.get("scheme", "http"),
        "metrics_path": target.get("path", DEFAULT_PATHS[target["engine"]]),
        **_client_settings(target, config_dir),
        "static_configs": [{"targets": [target["address"]], "labels": _labels(target)}],
    }


def probe_url(target: ScrapeTarget) -> str:
    return f"{target.get('scheme', 'http')}://{target['address']}{target.get('path', DEFAULT_PATHS[target['engine']])}"


def _probe_job(target: ScrapeTarget, blackbox_address: str) -> dict:
    # Prometheus asks blackbox_exporter to probe the URL; the probe's own series keep the target's labels.
    return {
        "job_name": job_name(target),
        "metrics_path": "/probe",
        "params": {"module": [probe_module(target)]},
        "static_configs": [{"targets": [probe_url(target)], "labels": _labels(target)}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": blackbox_address},
        ],
    }


def render_prometheus_config(
    targets: Sequence[ScrapeTarget],
    *,
    blackbox_address: str,
    rule_files: Sequence[str] = (f"{RULES_DIR}/*.yml",),
    scrape_interval: str = DEFAULT_SCRAPE_INTERVAL,
    evaluation_interval: str = DEFAULT_EVALUATION_INTERVAL,
    config_dir: str = CONFIG_DIR,
) -> str:
    """prometheus.yml: one job per target, sorted by job name; syntax both Prometheus 2.42 and 3.x accept.

    `config_dir` is where credentials and CA files are found (the tests point it at a temporary directory)."""
    check_targets(targets)
    _check_duration("scrape_interval", scrape_interval)
    _check_duration("evaluation_interval", evaluation_interval)
    jobs = [
        _probe_job(t, blackbox_address) if is_probed(t) else _scrape_job(t, config_dir)
        for t in sorted(targets, key=job_name)
    ]
    document = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": list(rule_files),
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)


def render_blackbox_config(targets: Sequence[ScrapeTarget], config_dir: str = CONFIG_DIR) -> str:
    """blackbox_exporter's config: one http module per probed target, expecting a 2xx answer."""
    check_targets(targets)
    modules = {}
    for target in sorted((t for t in targets if is_probed(t)), key=probe_module):
        # No valid_status_codes: blackbox then accepts any 2xx.
        http: dict = {"method": "GET", "preferred_ip_protocol": "ip4"}
        http.update(_client_settings(target, config_dir))
        modules[probe_module(target)] = {"prober": "http", "timeout": PROBE_TIMEOUT, "http": http}
    return yaml.safe_dump({"modules": modules}, sort_keys=True, default_flow_style=False)


def credential_names(targets: Sequence[ScrapeTarget]) -> tuple[list[str], list[str]]:
    """The bearer-token and CA names the targets refer to, each sorted and once."""
    tokens = sorted({t["bearer_token"] for t in targets if "bearer_token" in t})
    cas = sorted({t["tls_ca"] for t in targets if "tls_ca" in t})
    return tokens, cas


def needs_blackbox(targets: Sequence[ScrapeTarget]) -> bool:
    return any(is_probed(t) for t in targets)


def missing_credentials(targets: Sequence[ScrapeTarget], credentials: Mapping[str, object], cas: Mapping[str, object]) -> list[str]:
    """Names the targets use that were not given, as messages."""
    tokens, ca_names = credential_names(targets)
    missing = [f"bearer token {n!r}" for n in tokens if n not in credentials]
    missing += [f"CA certificate {n!r}" for n in ca_names if n not in cas]
    return missing
