"""The `llmstack:edge` section: the HTTPS reverse proxy (components/caddy.py) in front of the gateway replicas.

With an edge, it alone publishes ports; the gateway replicas publish nothing and are balanced per request.
`tls: internal` serves a certificate from the stack CA (components/stack_ca.py), whose certificate is a stack
output so clients can trust it; `acme` gets one from Let's Encrypt; `off` is plain HTTP for a laptop.
"""

from collections.abc import Sequence
from typing import Optional

import pulumi

from components.caddy import CaddyPort, CaddyProxy, CaddyProxyArgs, ExtraRoute, render_edge_caddyfile, split_names, tls_files
from components.stack_ca import StackCA

from .registry import EDGE_HOSTNAME
from .schema import Edge, StackConfig
from .sites import Site


def needs_stack_ca(stack: StackConfig) -> bool:
    """The edge serves a certificate from the stack CA."""
    return stack.edge is not None and stack.edge.tls == "internal"


def edge_domain(edge: Edge, client_address: str) -> str:
    """The name (or address) clients reach the edge at: the one given, else the gateway host's address."""
    return edge.domain or client_address


def edge_url(edge: Edge, domain: str) -> str:
    """`https://llm.example.com` (the port only when it is not the scheme's own)."""
    scheme, port, default = ("http", edge.http_port, 80) if edge.tls == "off" else ("https", edge.https_port, 443)
    host = f"[{domain}]" if ":" in domain else domain
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def ports(edge: Edge, extra_routes: Sequence[ExtraRoute] = ()) -> list[CaddyPort]:
    """What the edge publishes: HTTPS (and HTTP for ACME challenges and redirects), or HTTP alone with tls off; and
    the port of each app served on a port of its own (the web UI)."""
    if edge.tls == "off":
        published: list[CaddyPort] = [{"internal": edge.http_port, "external": edge.http_port, "ip": edge.bind}]
    else:
        published = [{"internal": edge.https_port, "external": edge.https_port, "ip": edge.bind}]
        if edge.tls == "acme":
            published.append({"internal": edge.http_port, "external": edge.http_port, "ip": edge.bind})
    published += [{"internal": int(r["port"]), "external": int(r["port"]), "ip": edge.bind} for r in extra_routes if "port" in r]
    return published


def deploy_edge(
    stack: StackConfig,
    site: Site,
    upstreams: pulumi.Output[list[str]],
    name_prefix: str,
    extra_routes: Sequence[ExtraRoute] = (),
    ca: Optional[StackCA] = None,
) -> CaddyProxy:
    """The edge's certificate (from the stack CA `ca` with `tls: internal`) and the Caddy container in front of the
    gateway (and the web UIs and dashboards of `extra_routes`, by path)."""
    edge = stack.edge
    assert edge is not None
    domain = edge_domain(edge, site.client_address)
    args: CaddyProxyArgs = {
        "network_name": site.network.name,
        "caddyfile": upstreams.apply(
            lambda hosts: render_edge_caddyfile(
                tls=edge.tls,
                upstreams=hosts,
                domain=domain if edge.tls != "off" else None,
                email=edge.email,
                https_port=edge.https_port,
                http_port=edge.http_port,
                extra_routes=list(extra_routes),
            )
        ),
        "ports": ports(edge, extra_routes),
        "hostname": EDGE_HOSTNAME,
    }
    if name_prefix:
        args["name_prefix"] = name_prefix
    if edge.image:
        args["image"] = edge.image
    if edge.tls == "internal":
        if ca is None:
            raise ValueError("tls: internal needs the stack CA")
        dns_names, ip_addresses = split_names([domain])
        certificate = ca.issue_server_certificate("edge", dns_names=dns_names, ip_addresses=ip_addresses)
        args["files"] = tls_files(certificate.cert_pem, certificate.private_key_pem)
    return CaddyProxy("edge", args, opts=site.options())
