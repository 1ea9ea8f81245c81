"""Prometheus: scrapes the stack's targets (blackbox_exporter probes the engines without /metrics) and evaluates the alert rules."""

import re
from collections.abc import Mapping
from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_docker as docker

from . import container
from .alert_rules import RULES_FILE_NAME, AlertThresholds, render_alert_rules
from .scrape_config import (
    BLACKBOX_CONFIG_FILE,
    BLACKBOX_PORT,
    CONFIG_FILE,
    DEFAULT_EVALUATION_INTERVAL,
    DEFAULT_SCRAPE_INTERVAL,
    RULES_DIR,
    ScrapeTarget,
    ca_file,
    credential_file,
    credential_names,
    missing_credentials,
    needs_blackbox,
    render_blackbox_config,
    render_prometheus_config,
)

__all__ = ["Prometheus", "PrometheusArgs"]

# Facts about prom/prometheus (v3.13 is the long-term-support line, supported until July 2027): a busybox
# image (so `wget` is there) running as `nobody`, entrypoint /bin/prometheus, data in /prometheus, which
# the image creates owned by nobody. Docker copies that ownership into a new, empty named volume on first
# mount, so the retained volume works as is (a bind mount would need `chown 65534`).
IMAGE = "prom/prometheus:v3.13.2"
PORT = 9090
DATA_PATH = "/prometheus"
HEALTH_TEST = ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{PORT}/-/healthy"]
HEALTH_START_PERIOD = "60s"
DEFAULT_RETENTION = "15d"
# Facts about prom/blackbox-exporter: busybox image, entrypoint /bin/blackbox_exporter, :9115, /-/healthy
# (checked with Debian's 0.23 build). v0.25.0 is the release pinned here.
BLACKBOX_IMAGE = "prom/blackbox-exporter:v0.25.0"
BLACKBOX_HEALTH_TEST = ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{BLACKBOX_PORT}/-/healthy"]
BLACKBOX_HEALTH_START_PERIOD = "30s"
LOOPBACK = "127.0.0.1"


class PrometheusArgs(TypedDict):
    """Inputs of a Prometheus."""

    network_name: pulumi.Input[str]
    """Docker network shared with the targets (and the relays to other hosts)."""
    targets: list[ScrapeTarget]
    """What to scrape or probe (plain data: see components/scrape_config.py)."""
    credentials: NotRequired[Mapping[str, pulumi.Input[str]]]
    """Bearer tokens the targets name in `bearer_token` (secrets): relay keys, Speaches' API key."""
    ca_certificates: NotRequired[Mapping[str, pulumi.Input[str]]]
    """PEM CA certificates the targets name in `tls_ca` (the stack CA that signs the relays)."""
    retention: NotRequired[str]
    """How long samples are kept (`--storage.tsdb.retention.time`, default 15d)."""
    scrape_interval: NotRequired[str]
    """Default 15s."""
    evaluation_interval: NotRequired[str]
    """How often alert rules are evaluated; default 15s."""
    alert_thresholds: NotRequired[AlertThresholds]
    """Limits of the alert rules (components/alert_rules.py)."""
    bind_port: NotRequired[int]
    """Publish the UI on 127.0.0.1:<port> of the host (default: not published; reach it through the edge)."""
    image: NotRequired[str]
    """Prometheus image override."""
    blackbox_image: NotRequired[str]
    """blackbox_exporter image override."""
    container_name: NotRequired[str]
    """Container name and network alias (default `prometheus`); the probe container is `<name>-blackbox`."""
    data_volume_name: NotRequired[str]
    """Retained volume for the time series (default `<container_name>-data`)."""


def retention_flag(retention: str) -> str:
    """`--storage.tsdb.retention.time=<d>`, refusing what Prometheus would refuse at start."""
    if not re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", retention):
        raise ValueError(f"Prometheus retention {retention!r}: use a duration such as 15d, 12w or 1y")
    return f"--storage.tsdb.retention.time={retention}"


def serve_command(retention: str) -> list[str]:
    """The arguments of /bin/prometheus (the image's entrypoint)."""
    return [f"--config.file={CONFIG_FILE}", f"--storage.tsdb.path={DATA_PATH}", retention_flag(retention)]


def _uploads(files: Mapping[str, pulumi.Input[str]]) -> list[docker.ContainerUploadArgs]:
    return [docker.ContainerUploadArgs(file=path, content=files[path]) for path in sorted(files)]


def _loopback_port(internal: int, bind_port: Optional[int]) -> list[docker.ContainerPortArgs]:
    if bind_port is None:
        return []
    return [docker.ContainerPortArgs(internal=internal, external=int(bind_port), ip=LOOPBACK)]


class Prometheus(pulumi.ComponentResource):
    """Prometheus with generated scrape config and alert rules, on a retained volume; a blackbox_exporter beside it when something is probed."""

    internal_url: pulumi.Output[str]
    """URL on the stack's network, e.g. `http://prometheus:9090` (Grafana's datasource)."""
    config_yaml: pulumi.Output[str]
    """The uploaded prometheus.yml (holds no secret: credentials are files it names)."""
    rules_yaml: pulumi.Output[str]
    """The uploaded alert rules."""
    blackbox_yaml: pulumi.Output[str]
    """The uploaded blackbox_exporter config (empty when nothing is probed)."""

    def __init__(self, name: str, args: PrometheusArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:Prometheus", name, {}, opts)
        targets = list(args["targets"])
        credentials = dict(args.get("credentials") or {})
        cas = dict(args.get("ca_certificates") or {})
        missing = missing_credentials(targets, credentials, cas)
        if missing:
            raise ValueError(f"Prometheus {name}: the targets name {', '.join(missing)}, which were not given")
        container_name = args.get("container_name") or "prometheus"
        blackbox_name = f"{container_name}-blackbox"
        network = args["network_name"]
        token_names, ca_names = credential_names(targets)
        # Only what the targets use is uploaded; each token file is a secret end to end.
        secret_files: dict[str, pulumi.Input[str]] = {
            credential_file(n): pulumi.Output.secret(credentials[n]) for n in token_names
        }
        ca_files: dict[str, pulumi.Input[str]] = {ca_file(n): cas[n] for n in ca_names}

        config_text = render_prometheus_config(
            targets,
            blackbox_address=f"{blackbox_name}:{BLACKBOX_PORT}",
            rule_files=[f"{RULES_DIR}/*.yml"],
            scrape_interval=args.get("scrape_interval") or DEFAULT_SCRAPE_INTERVAL,
            evaluation_interval=args.get("evaluation_interval") or DEFAULT_EVALUATION_INTERVAL,
        )
        rules_text = render_alert_rules(args.get("alert_thresholds"))
        blackbox_text = render_blackbox_config(targets) if needs_blackbox(targets) else ""

        depends: list[pulumi.Resource] = list(container.depends_on_of(opts))
        if blackbox_text:
            probe = container.service_container(
                f"{name}-blackbox",
                parent=self,
                container_name=blackbox_name,
                image=container.pinned_image(f"{name}-blackbox-image", args.get("blackbox_image") or BLACKBOX_IMAGE, self),
                network_name=network,
                aliases=[blackbox_name],
                command=[f"--config.file={BLACKBOX_CONFIG_FILE}"],
                envs=[],
                health=container.healthcheck(BLACKBOX_HEALTH_TEST, BLACKBOX_HEALTH_START_PERIOD),
                component="blackbox-exporter",
                uploads=_uploads({BLACKBOX_CONFIG_FILE: blackbox_text, **secret_files, **ca_files}),
                depends_on=container.depends_on_of(opts),
            )
            depends.append(probe)

        data = container.retained_volume(
            f"{name}-data", args.get("data_volume_name") or f"{container_name}-data", "prometheus", self
        )
        self.container = container.service_container(
            name,
            parent=self,
            container_name=container_name,
            image=container.pinned_image(f"{name}-image", args.get("image") or IMAGE, self),
            network_name=network,
            aliases=[container_name],
            command=serve_command(args.get("retention") or DEFAULT_RETENTION),
            envs=[],
            health=container.healthcheck(HEALTH_TEST, HEALTH_START_PERIOD),
            component="prometheus",
            volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path=DATA_PATH)],
            ports=_loopback_port(PORT, args.get("bind_port")),
            uploads=_uploads({CONFIG_FILE: config_text, f"{RULES_DIR}/{RULES_FILE_NAME}": rules_text, **secret_files, **ca_files}),
            depends_on=depends,
        )
        self.internal_url = pulumi.Output.from_input(f"http://{container_name}:{PORT}")
        self.config_yaml = pulumi.Output.from_input(config_text)
        self.rules_yaml = pulumi.Output.from_input(rules_text)
        self.blackbox_yaml = pulumi.Output.from_input(blackbox_text)
        self.register_outputs(
            {
                "internal_url": self.internal_url,
                "config_yaml": self.config_yaml,
                "rules_yaml": self.rules_yaml,
                "blackbox_yaml": self.blackbox_yaml,
            }
        )
