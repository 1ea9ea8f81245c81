"""Model, network and host names as Docker and its DNS read them: case-insensitive, never an address, never a built-in network."""

import ipaddress
import re
from collections.abc import Iterable
from typing import Any, Optional
from urllib.parse import urlsplit

from .errors import ConfigIssue, key_path

# Docker's predefined network names (moby's runconfig.IsPreDefinedNetwork): `docker network create`
# refuses them; they are refused here in any case, as a name that differs only in case misleads.
BUILTIN_NETWORKS = ("bridge", "host", "none", "default", "ingress")
# Docker's default bridge (docker0); a stack network overlapping it cuts the host off from its containers.
DEFAULT_BRIDGE = ipaddress.ip_network("172.17.0.0/16")
# A bridge network needs a gateway and room for containers: /30 leaves two addresses (gateway and one container).
MAX_PREFIX_V4 = 30
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def is_host_name(text: str) -> bool:
    """True for a DNS host name (RFC 1123 labels) or an IP address."""
    try:
        ipaddress.ip_address(text.strip("[]") if text.startswith("[") else text)
        return True
    except ValueError:
        return bool(_HOST_NAME.match(text))


def address_like(name: str) -> Optional[str]:
    """Why a model name would be read as an address by a resolver (`127.0.0.1`, `1`), or None."""
    if name.isdigit():
        return "is all digits, which resolvers read as an IP address"
    try:
        ipaddress.ip_address(name)
        return "is an IP address"
    except ValueError:
        pass
    # inet_aton also reads shortened and hex forms (`127.1`, `0x7f.1`) as addresses.
    if re.fullmatch(r"(0x[0-9a-fA-F]+|[0-9]+)(\.(0x[0-9a-fA-F]+|[0-9]+)){0,3}", name):
        return "reads as an IP address"
    return None


def model_name_issues(locations: list[tuple[str, tuple]], reserved: tuple[str, ...]) -> Iterable[ConfigIssue]:
    """Names that differ only in case (one name to Docker's DNS), reserved names in any case, address-like names."""
    seen: dict[str, tuple[str, tuple]] = {}
    for name, loc in locations:
        folded = name.lower()
        other = seen.setdefault(folded, (name, loc))
        if other[0] != name:
            yield ConfigIssue(
                key_path(loc),
                f"model name {name!r} is {other[0]!r} ({key_path(other[1])}) to Docker's DNS, which ignores case",
                "give every model a name that differs in more than case",
            )
        if name in reserved:
            yield ConfigIssue(key_path(loc), f"{name!r} is the name of a stack service container", "choose another model name")
        elif folded in reserved:
            yield ConfigIssue(
                key_path(loc),
                f"{name!r} is the name of a stack service container ({folded}) to Docker's DNS, which ignores case",
                "choose another model name",
            )
        why = address_like(name)
        if why:
            yield ConfigIssue(key_path(loc), f"model name {name!r} {why}; it becomes a host name on the network", "use a name with a letter, such as qwen3")


def network_issues(stack: Any) -> Iterable[ConfigIssue]:
    """A built-in network name, or a subnet a bridge network cannot use."""
    if stack.network.name.lower() in BUILTIN_NETWORKS:
        yield ConfigIssue(
            key_path(("network", "name")),
            f"{stack.network.name!r} names one of Docker's predefined networks ({', '.join(BUILTIN_NETWORKS)}; case ignored)",
            "choose another name, such as llm",
        )
    why = address_like(stack.network.name)
    if why:
        yield ConfigIssue(key_path(("network", "name")), f"network name {stack.network.name!r} {why}", "choose a name with a letter, such as llm")
    if stack.network.subnet is None:
        return
    subnet = ipaddress.ip_network(stack.network.subnet)
    where = key_path(("network", "subnet"))
    if subnet.version == 6:
        yield ConfigIssue(where, "is an IPv6 subnet but the stack network has IPv6 off", "use an IPv4 private range such as 192.168.0.0/24")
        return
    reasons = [
        (subnet.prefixlen > MAX_PREFIX_V4, f"/{subnet.prefixlen} leaves no room for a gateway and containers"),
        (subnet.prefixlen == 0, "covers every address"),
        (subnet.overlaps(DEFAULT_BRIDGE), f"overlaps Docker's default bridge {DEFAULT_BRIDGE}"),
        (subnet.is_loopback or subnet.overlaps(ipaddress.ip_network("127.0.0.0/8")), "overlaps loopback 127.0.0.0/8"),
        (subnet.is_link_local or subnet.overlaps(ipaddress.ip_network("169.254.0.0/16")), "overlaps link-local 169.254.0.0/16"),
        (subnet.is_multicast or subnet.overlaps(ipaddress.ip_network("224.0.0.0/4")), "overlaps multicast 224.0.0.0/4"),
        (subnet.overlaps(ipaddress.ip_network("0.0.0.0/8")), "overlaps 0.0.0.0/8 (this network)"),
        (subnet.overlaps(ipaddress.ip_network("240.0.0.0/4")), "overlaps the reserved 240.0.0.0/4"),
    ]
    for bad, why in reasons:
        if bad:
            yield ConfigIssue(where, f"{subnet} {why}", "use a private range such as 192.168.0.0/24 or 10.20.0.0/16")
            return


def host_issues(stack: Any) -> Iterable[ConfigIssue]:
    """A host's `address` that is not a host name or an IP; a Docker URL whose host or port cannot be read."""
    for name, host in sorted(stack.hosts.items()):
        if host.address is not None and not is_host_name(host.address):
            yield ConfigIssue(
                key_path(("hosts", name, "address")),
                f"{host.address!r} is not a host name or an IP address (it goes into the gateway URL)",
                "write a host name such as gpu-01.example.com or an IP address",
            )
        url = urlsplit(host.docker)
        if url.scheme not in ("ssh", "tcp"):
            continue
        where = key_path(("hosts", name, "docker"))
        try:
            port = url.port
        except ValueError:
            yield ConfigIssue(where, "the port of the Docker URL is not a number from 1 to 65535", f"write {url.scheme}://user@host or {url.scheme}://user@host:2222")
            continue
        if port == 0:
            yield ConfigIssue(where, "the port of the Docker URL is 0", f"leave the port out or write one from 1 to 65535")
        if url.hostname and not is_host_name(url.hostname):
            yield ConfigIssue(where, f"{url.hostname!r} is not a host name or an IP address", f"write {url.scheme}://user@host")
        if url.path not in ("", "/") or url.query or url.fragment:
            yield ConfigIssue(where, "the Docker URL has a path, query or fragment after the host", f"write {url.scheme}://user@host[:port]")
        if url.username is not None and (not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", url.username)):
            yield ConfigIssue(where, "the user of the Docker URL is not a plain user name", f"write {url.scheme}://user@host")
