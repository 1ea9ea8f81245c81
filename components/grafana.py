"""Grafana with the stack's Prometheus as datasource and generated dashboards, its admin password a generated secret."""

from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_docker as docker

from . import container
from .dashboards import DashboardModel, GpuReservation, provisioning_files

__all__ = ["Grafana", "GrafanaArgs"]

# Facts about grafana/grafana (13.x): an Alpine image (busybox `wget`), runs as uid 472, data in
# /var/lib/grafana (owned by 472 in the image, so a new named volume inherits it), provisioning read
# from /etc/grafana/provisioning at start, /api/health answers without a login.
IMAGE = "grafana/grafana:13.1.0"
PORT = 3000
DATA_PATH = "/var/lib/grafana"
HEALTH_TEST = ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{PORT}/api/health"]
# The first start migrates its database.
HEALTH_START_PERIOD = "120s"
ADMIN_PASSWORD_ENV = "GF_SECURITY_ADMIN_PASSWORD"
PASSWORD_LENGTH = 32
PLAIN_ENVS = {
    "GF_ANALYTICS_REPORTING_ENABLED": "false",
    "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
    "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
    "GF_USERS_ALLOW_SIGN_UP": "false",
}
LOOPBACK = "127.0.0.1"


class GrafanaArgs(TypedDict):
    """Inputs of a Grafana."""

    network_name: pulumi.Input[str]
    """Docker network shared with Prometheus."""
    prometheus_url: pulumi.Input[str]
    """Prometheus as Grafana reaches it, e.g. `http://prometheus:9090` (Prometheus.internal_url)."""
    models: list[DashboardModel]
    """Every model of the stack: each gets its row on the models dashboard."""
    gpus: NotRequired[list[GpuReservation]]
    """The GPU plan: each GPU gets its row on the GPUs dashboard (none: no GPU dashboard)."""
    admin_password: NotRequired[pulumi.Input[str]]
    """Password of the `admin` user (secret); generated and kept in state when absent. Grafana reads it only
    when it first creates its database (in the retained volume): a later change needs
    `grafana cli admin reset-admin-password` in the container."""
    root_url: NotRequired[str]
    """The URL users open (GF_SERVER_ROOT_URL), e.g. `https://llm.example.com/grafana/` behind the edge."""
    serve_from_sub_path: NotRequired[bool]
    """Serve under the root URL's path (GF_SERVER_SERVE_FROM_SUB_PATH) when the edge routes by path."""
    bind_port: NotRequired[int]
    """Publish the UI on 127.0.0.1:<port> of the host (default: not published; reach it through the edge)."""
    image: NotRequired[str]
    """Grafana image override."""
    container_name: NotRequired[str]
    """Container name and network alias (default `grafana`)."""
    data_volume_name: NotRequired[str]
    """Retained volume for Grafana's database (default `<container_name>-data`)."""


def plain_envs(args: GrafanaArgs) -> dict[str, str]:
    envs = dict(PLAIN_ENVS)
    if args.get("root_url"):
        envs["GF_SERVER_ROOT_URL"] = str(args["root_url"])
    if args.get("serve_from_sub_path"):
        envs["GF_SERVER_SERVE_FROM_SUB_PATH"] = "true"
    return envs


class Grafana(pulumi.ComponentResource):
    """Grafana provisioned from files: the stack's Prometheus, and gateway, models and GPU dashboards."""

    internal_url: pulumi.Output[str]
    """URL on the stack's network, e.g. `http://grafana:3000` (what the edge forwards to)."""
    admin_password: pulumi.Output[str]
    """Password of the `admin` user (secret)."""
    provisioning: pulumi.Output[dict[str, str]]
    """Container path -> content of every uploaded provisioning and dashboard file (no secret in them)."""

    def __init__(self, name: str, args: GrafanaArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:Grafana", name, {}, opts)
        container_name = args.get("container_name") or "grafana"
        models, gpus = list(args["models"]), list(args.get("gpus") or [])
        # The paths depend on the models and GPUs only; the datasource file waits for the URL (an Output).
        files: pulumi.Output[dict[str, str]] = pulumi.Output.from_input(args["prometheus_url"]).apply(
            lambda url: provisioning_files(url, models, gpus)
        )
        paths = sorted(provisioning_files("", models, gpus))
        password = args.get("admin_password")
        admin_password = (
            container.generated_secret(f"{name}-admin-password", self, length=PASSWORD_LENGTH)
            if password is None
            else pulumi.Output.secret(password)
        )
        data = container.retained_volume(
            f"{name}-data", args.get("data_volume_name") or f"{container_name}-data", "grafana", self
        )
        bind_port = args.get("bind_port")
        self.container = container.service_container(
            name,
            parent=self,
            container_name=container_name,
            image=container.pinned_image(f"{name}-image", args.get("image") or IMAGE, self),
            network_name=args["network_name"],
            aliases=[container_name],
            command=[],
            envs=container.container_envs(plain_envs(args), {ADMIN_PASSWORD_ENV: admin_password}),
            health=container.healthcheck(HEALTH_TEST, HEALTH_START_PERIOD),
            component="grafana",
            volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path=DATA_PATH)],
            ports=[] if bind_port is None else [docker.ContainerPortArgs(internal=PORT, external=int(bind_port), ip=LOOPBACK)],
            uploads=[docker.ContainerUploadArgs(file=path, content=files.apply(lambda f, p=path: f[p])) for path in paths],
            depends_on=container.depends_on_of(opts),
        )
        self.internal_url = pulumi.Output.from_input(f"http://{container_name}:{PORT}")
        self.admin_password = admin_password
        self.provisioning = files
        self.register_outputs(
            {"internal_url": self.internal_url, "admin_password": self.admin_password, "provisioning": self.provisioning}
        )
