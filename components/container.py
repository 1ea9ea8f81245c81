"""Conventions every llmstack container follows: pinned image, GPU requests, healthcheck, envs, retained volumes, labels, waiting."""

import re
from collections.abc import Mapping, Sequence
from typing import Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

RESTART_POLICY = "unless-stopped"
LABEL_PREFIX = "llmstack"
ALL_GPUS = "all"
# Pulling a multi-GB engine image over a slow link takes a while; the provider's default is 20 min.
IMAGE_PULL_TIMEOUT = "60m"
HEALTH_INTERVAL = "30s"
HEALTH_TIMEOUT = "10s"
HEALTH_RETRIES = 3

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def duration_seconds(duration: str) -> int:
    """Seconds in a Go duration string such as `90s`, `15m` or `1h30m`."""
    parts = _DURATION_PART.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r} (use e.g. 90s, 15m, 1h30m)")
    return int(sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def pinned_image(resource_name: str, image: str, parent: pulumi.Resource) -> docker.RemoteImage:
    """The engine image, pulled once and kept on the host when the stack lets go of it."""
    return docker.RemoteImage(
        resource_name,
        name=image,
        keep_locally=True,
        opts=pulumi.ResourceOptions(
            parent=parent, custom_timeouts=pulumi.CustomTimeouts(create=IMAGE_PULL_TIMEOUT)
        ),
    )


def gpu_device_requests(gpus: Optional[Sequence[str]]) -> Optional[list[docker.ContainerDeviceRequestArgs]]:
    """NVIDIA device requests for `["all"]` or a list of device ids; None (CPU only) for no GPUs."""
    if not gpus:
        return None
    if list(gpus) == [ALL_GPUS]:
        return [docker.ContainerDeviceRequestArgs(driver="nvidia", capabilities=["gpu"], count=-1)]
    return [docker.ContainerDeviceRequestArgs(driver="nvidia", capabilities=["gpu"], device_ids=list(gpus))]


def healthcheck(test: Sequence[str], start_period: str) -> docker.ContainerHealthcheckArgs:
    """A healthcheck with llmstack's interval, timeout and retries."""
    duration_seconds(start_period)
    return docker.ContainerHealthcheckArgs(
        tests=list(test),
        interval=HEALTH_INTERVAL,
        timeout=HEALTH_TIMEOUT,
        retries=HEALTH_RETRIES,
        start_period=start_period,
    )


def container_envs(
    plain: Mapping[str, str], secret: Optional[Mapping[str, pulumi.Input[str]]] = None
) -> list[pulumi.Input[str]]:
    """`NAME=value` envs sorted by name; a secret value stays a Pulumi secret (and makes the list secret)."""
    secret = secret or {}
    clash = set(plain) & set(secret)
    if clash:
        raise ValueError(f"env set twice: {sorted(clash)}")
    envs: list[pulumi.Input[str]] = []
    for name in sorted({*plain, *secret}):
        if name in secret:
            envs.append(pulumi.Output.secret(pulumi.Output.concat(name, "=", secret[name])))
        else:
            envs.append(f"{name}={plain[name]}")
    return envs


def generated_secret(resource_name: str, parent: Optional[pulumi.Resource], length: int = 40) -> pulumi.Output[str]:
    """A random key kept in state (a child of `parent`, or of the stack); its inputs are ignored once created, so no
    later change rotates it."""
    password = random.RandomPassword(
        resource_name,
        length=length,
        special=False,
        opts=pulumi.ResourceOptions(parent=parent, ignore_changes=["length", "special", "upper", "lower", "numeric"]),
    )
    return pulumi.Output.secret(password.result)


def engine_api_key(resource_name: str, given: Optional[pulumi.Input[str]], parent: pulumi.Resource) -> pulumi.Output[str]:
    """The key an engine requires: the one given, else a generated one; a secret either way."""
    return generated_secret(resource_name, parent) if given is None else pulumi.Output.secret(given)


def docker_name(name_prefix: Optional[str], name: str) -> str:
    """A Docker name scoped by a prefix (`dev-qwen3`), so stacks sharing a Docker engine never share a name."""
    return f"{name_prefix}-{name}" if name_prefix else name


def ownership() -> dict[str, str]:
    """The Pulumi project and stack that own a Docker object, as labels."""
    return {f"{LABEL_PREFIX}.project": pulumi.get_project(), f"{LABEL_PREFIX}.stack": pulumi.get_stack()}


def service_labels(component: str, instance: str) -> list[docker.ContainerLabelArgs]:
    """Labels that tell which project, stack, llmstack component and instance a container belongs to."""
    labels = {**ownership(), f"{LABEL_PREFIX}.component": component, f"{LABEL_PREFIX}.instance": instance}
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())]


def retained_volume(resource_name: str, volume_name: str, component: str, parent: pulumi.Resource) -> docker.Volume:
    """A named volume for state (models, databases) that `pulumi destroy` and replacements leave in place."""
    return docker.Volume(
        resource_name,
        name=volume_name,
        labels=[
            docker.VolumeLabelArgs(label=k, value=v)
            for k, v in sorted(
                {**ownership(), f"{LABEL_PREFIX}.component": component, f"{LABEL_PREFIX}.retained": "true"}.items()
            )
        ],
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True),
    )


def depends_on_of(opts: Optional[pulumi.ResourceOptions]) -> list[pulumi.Resource]:
    """The resources a component was told to depend on; its container must wait for them, not just the component."""
    if opts is None or opts.depends_on is None:
        return []
    if isinstance(opts.depends_on, pulumi.Resource):
        return [opts.depends_on]
    if isinstance(opts.depends_on, (list, tuple)):
        return list(opts.depends_on)  # type: ignore[arg-type]
    raise TypeError("depends_on must be a resource or a list of resources")


def service_container(
    resource_name: str,
    *,
    parent: pulumi.Resource,
    container_name: pulumi.Input[str],
    image: docker.RemoteImage,
    network_name: pulumi.Input[str],
    aliases: Sequence[str],
    command: pulumi.Input[Sequence[pulumi.Input[str]]],
    envs: pulumi.Input[Sequence[pulumi.Input[str]]],
    health: docker.ContainerHealthcheckArgs,
    component: str,
    volumes: Sequence[docker.ContainerVolumeArgs] = (),
    gpus: Optional[Sequence[str]] = None,
    ports: Sequence[docker.ContainerPortArgs] = (),
    uploads: Sequence[docker.ContainerUploadArgs] = (),
    ipc_mode: Optional[str] = None,
    depends_on: Sequence[pulumi.Resource] = (),
    instance: Optional[str] = None,
    create_before_delete: bool = False,
    drain_seconds: Optional[int] = None,
) -> docker.Container:
    """The long-running container of a service: restarted unless stopped, `pulumi up` waits until it is healthy.

    A replacement deletes the old container first (its fixed name and published ports could not be taken twice),
    unless `create_before_delete`: for a container whose name changes with every replacement (`container_name` an
    Output) and that publishes nothing, so the old one keeps serving until the new one is healthy, then gets
    `drain_seconds` to finish what it serves when it is stopped. `instance` is its label (default: its name)."""
    if create_before_delete and (ports or isinstance(container_name, str)):
        raise ValueError("only a container with a generated name and no published port can be created before the old one goes")
    start_period = duration_seconds(health.start_period)  # type: ignore[arg-type]
    # Wait out the whole start period plus the retries that may follow it.
    wait_timeout = start_period + HEALTH_RETRIES * duration_seconds(HEALTH_INTERVAL) + 120
    return docker.Container(
        resource_name,
        name=container_name,
        image=image.image_id,
        command=command,
        envs=envs,
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network_name, aliases=list(aliases))],
        volumes=list(volumes) or None,
        device_requests=gpu_device_requests(gpus),
        ports=list(ports) or None,
        uploads=list(uploads) or None,
        ipc_mode=ipc_mode,
        healthcheck=health,
        restart=RESTART_POLICY,
        labels=service_labels(component, instance or container_name),  # type: ignore[arg-type]
        wait=True,
        wait_timeout=wait_timeout,
        destroy_grace_seconds=drain_seconds,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            delete_before_replace=not create_before_delete,
            replace_on_changes=["healthcheck"],
            custom_timeouts=pulumi.CustomTimeouts(create=f"{wait_timeout // 60 + 10}m"),
        ),
    )
