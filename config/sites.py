"""The Docker hosts of a stack: one provider and one network per host, shared by every service placed there."""

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker

from components.container import docker_name, ownership

from .schema import StackConfig, resolve_host


@dataclass(frozen=True)
class Site:
    """A Docker host ready for services: its provider, its network, and where clients reach it."""

    name: str
    provider: docker.Provider
    network: docker.Network
    client_address: str

    def options(self, **extra) -> pulumi.ResourceOptions:
        """Resource options that place a component on this host."""
        return pulumi.ResourceOptions(providers={"docker": self.provider}, **extra)


PROVIDER_PREFIX = "host-"


def provider_name(host: str) -> str:
    """The resource name of a host's Docker provider: `host-gpu-01`."""
    return PROVIDER_PREFIX + host


def host_of_provider(provider: str) -> Optional[str]:
    """The host a Docker provider resource name stands for, or None for another provider."""
    return provider[len(PROVIDER_PREFIX):] if provider.startswith(PROVIDER_PREFIX) else None


def build_sites(stack: StackConfig, name_prefix: str = "") -> dict[str, Site]:
    """A provider and a network for every configured host; the network's name is scoped by the prefix."""
    sites = {}
    for name, host in sorted(stack.hosts.items()):
        provider = docker.Provider(provider_name(name), host=host.docker, ssh_opts=list(host.ssh_opts) or None)
        network = docker.Network(
            f"network-{name}",
            name=docker_name(name_prefix, stack.network.name),
            labels=[docker.NetworkLabelArgs(label=k, value=v) for k, v in sorted(ownership().items())],
            driver="bridge",
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=stack.network.subnet)] if stack.network.subnet else None,
            opts=pulumi.ResourceOptions(provider=provider),
        )
        sites[name] = Site(name, provider, network, host.client_address())
    return sites


def site_of(stack: StackConfig, sites: dict[str, Site], host: str | None) -> Site:
    """The site a service configured with `host:` (or none) runs on."""
    return sites[resolve_host(stack, host)]
