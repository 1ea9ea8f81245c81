"""GpuExporter: NVIDIA's dcgm-exporter on a GPU host, so Prometheus sees memory, utilisation, temperature and power per GPU."""

from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_docker as docker

from . import container

__all__ = ["GpuExporter", "GpuExporterArgs"]

# Facts about nvcr.io/nvidia/k8s/dcgm-exporter (NVIDIA's README): /metrics on :9400, needs the GPUs
# (an NVIDIA device request, all of them). The distroless variant has no shell and no HTTP client, so
# the container cannot probe itself: Prometheus' `up` for it (the TargetDown alert) is its health.
# Profiling (DCGM_FI_PROF_*) counters would need CAP_SYS_ADMIN; the default ones used here do not.
IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless"
PORT = 9400
HOSTNAME = "dcgm-exporter"
LOOPBACK = "127.0.0.1"


class GpuExporterArgs(TypedDict):
    """Inputs of a GpuExporter."""

    network_name: pulumi.Input[str]
    """Docker network Prometheus (or the host's relay) reaches it on."""
    gpus: NotRequired[list[str]]
    """GPU device ids to watch, or `["all"]` (default)."""
    bind_port: NotRequired[int]
    """Publish /metrics on 127.0.0.1:<port> of the host (default: not published)."""
    image: NotRequired[str]
    """Image override (e.g. a dcgm-exporter tag matching an older driver)."""
    container_name: NotRequired[str]
    """Network alias (default `dcgm-exporter`), and the container's name after the prefix."""
    name_prefix: NotRequired[str]
    """Prefix of the container's Docker name (e.g. the stack name); the alias stays unprefixed."""


class GpuExporter(pulumi.ComponentResource):
    """dcgm-exporter with every listed GPU, restarted unless stopped, on the stack network only."""

    address: pulumi.Output[str]
    """`name:port` Prometheus scrapes on the stack network (a ScrapeTarget's `address`)."""

    def __init__(self, name: str, args: GpuExporterArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:GpuExporter", name, {}, opts)
        container_name = args.get("container_name") or HOSTNAME
        gpus = list(args.get("gpus") or [container.ALL_GPUS])
        bind_port = args.get("bind_port")
        image = container.pinned_image(f"{name}-image", args.get("image") or IMAGE, self)
        docker_name = container.docker_name(args.get("name_prefix"), container_name)
        self.container = docker.Container(
            name,
            name=docker_name,
            image=image.image_id,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args["network_name"], aliases=[container_name])],
            device_requests=container.gpu_device_requests(gpus),
            ports=None if bind_port is None else [docker.ContainerPortArgs(internal=PORT, external=int(bind_port), ip=LOOPBACK)],
            restart=container.RESTART_POLICY,
            labels=container.service_labels("dcgm-exporter", docker_name),
            # Its fixed name cannot be taken twice: a replacement removes the old container first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=container.depends_on_of(opts), delete_before_replace=True),
        )
        self.address = pulumi.Output.from_input(f"{container_name}:{PORT}")
        self.register_outputs({"address": self.address})
