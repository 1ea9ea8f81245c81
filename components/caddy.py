"""Caddy, one reverse proxy for two jobs: the relay in front of the engines of a GPU host without the gateway,
and the HTTPS edge in front of the gateway replicas. Renders their Caddyfiles and runs the `CaddyProxy` container.

Relay: one TLS port (certificate from the stack CA); `/<engine>/...` routes to that engine on the host's
Docker network, only the paths LiteLLM calls, only with that engine's bearer key. A path prefix, not a host
name per engine: one certificate for the host's address, no DNS names to invent, and LiteLLM addresses each
engine by its own api_base, e.g. `https://10.0.0.2:8443/qwen3/v1`.
Edge: `tls: acme | internal | off`; per-request balancing over every gateway replica and worker.
Both Caddyfiles hold no secret: keys are read at request time from envs (`{env.NAME}`) passed as secret envs.
Only directives that Debian's Caddy 2.6.2 (the tests) and the pinned 2.11 image both accept are used.
"""

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Literal, NotRequired, Optional, TypedDict

import pulumi
import pulumi_docker as docker

from . import container

# Facts about the caddy image (caddyserver/caddy-docker, 2.11/alpine/Dockerfile): Alpine with busybox
# (wget), CMD `caddy run --config /etc/caddy/Caddyfile --adapter caddyfile`, XDG dirs /data and /config.
IMAGE = "caddy:2.11.4"
CADDYFILE_PATH = "/etc/caddy/Caddyfile"
DATA_PATH = "/data"
CONFIG_PATH = "/config"
COMMAND = ["caddy", "run", "--config", CADDYFILE_PATH, "--adapter", "caddyfile"]
TLS_DIR = "/etc/caddy/tls"
CERT_FILE = f"{TLS_DIR}/server.crt"
KEY_FILE = f"{TLS_DIR}/server.key"
# The admin API is off; a plain-HTTP listener on the container's loopback answers the healthcheck.
HEALTH_PORT = 2020
HEALTH_PATH = "/health"
HEALTH_TEST = ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{HEALTH_PORT}{HEALTH_PATH}"]
HEALTH_START_PERIOD = "30s"

RELAY_PORT = 8443
EDGE_HTTPS_PORT = 443
EDGE_HTTP_PORT = 80
# An hour of 16-bit 16 kHz mono WAV is 115 MB; the bound applies to every request through relay and edge.
MAX_REQUEST_BODY = "200MB"
# Slow clients may not hold a connection open without sending headers; nothing else is bounded in time:
# no read/write or response-header timeouts, so an hour-long generation or stream is never cut short
# (LiteLLM's own request timeout bounds a request).
READ_HEADER_TIMEOUT = "30s"
IDLE_TIMEOUT = "5m"
DIAL_TIMEOUT = "5s"
# LiteLLM answers /health/readiness without a key once its config (and database) are loaded.
GATEWAY_READINESS_PATH = "/health/readiness"
GATEWAY_HEALTH_INTERVAL = "5s"
GATEWAY_HEALTH_TIMEOUT = "3s"
# A request that found no reachable replica is tried again on the others for this long.
LB_TRY_DURATION = "15s"
LB_TRY_INTERVAL = "250ms"
# A replica that refused a connection is skipped by the next requests for this long (passive check).
FAIL_DURATION = "10s"
# Not `includeSubDomains`: the stack owns one name, not the user's whole domain.
HSTS = "max-age=31536000"

Engine = Literal["vllm", "infinity", "speaches", "ollama"]
# What LiteLLM 1.108.7 calls on each engine (api_base + these), and nothing else: no /metrics, /health,
# /tokenize, /invocations, /pooling, no model downloads (POST /v1/models/{id}) or pulls (/api/pull).
ENGINE_PATHS: dict[str, tuple[str, ...]] = {
    # hosted_vllm/: chat and text completions; GET /v1/models when the proxy lists a deployment's models.
    "vllm": ("/v1/chat/completions", "/v1/completions", "/v1/models"),
    # infinity/: /embeddings and /rerank; /models as an OpenAI-style backend.
    "infinity": ("/embeddings", "/rerank", "/models"),
    # openai/ with mode audio_transcription / audio_speech.
    "speaches": ("/v1/audio/transcriptions", "/v1/audio/speech", "/v1/models"),
    # ollama_chat/: /api/chat; /api/show for model info, /api/tags for model listing.
    "ollama": ("/api/chat", "/api/show", "/api/tags"),
}
# A route of this kind forwards nothing for the gateway, only its monitoring path (a GPU exporter on the host).
MONITOR_ONLY = "dcgm"
# What LiteLLM expects at the end of each engine's api_base.
API_BASE_SUFFIX: dict[str, str] = {"vllm": "/v1", "infinity": "", "speaches": "/v1", "ollama": ""}
# Ollama checks no key: the relay checks it and does not pass it on. The others check it again themselves.
STRIP_AUTHORIZATION = frozenset({"ollama"})

_ROUTE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_UPSTREAM = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:\d{1,5}$")
_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
_EMAIL = re.compile(r"^[^\s@{}\"`]+@[^\s@{}\"`]+$")


class RelayRoute(TypedDict):
    """One engine behind a relay: reached at `/<name>/...` with its own bearer key."""

    name: str
    """Path segment of the engine (lowercase letters, digits, `.`, `_`, `-`), e.g. its container name."""
    engine: str
    """`vllm`, `infinity`, `speaches` or `ollama`: which paths are forwarded."""
    upstream: str
    """`host:port` of the engine on the relay's Docker network, e.g. `qwen3:8000`."""
    key_env: str
    """Env var of the relay container holding the engine's bearer key (passed as a secret env)."""
    monitor_path: NotRequired[str]
    """The one path Prometheus may reach (`/metrics`, or the health path a probe asks for), with the relay's
    monitoring key instead of the engine's; the engine then gets its own key, never the monitoring one."""


class ExtraRoute(TypedDict):
    """A web UI or dashboard published through the edge, by path or by host name."""

    upstream: str
    """`host:port` on the edge's Docker network, e.g. `grafana:3000`."""
    path: NotRequired[str]
    """Served at this path and below, prefix kept (the app is told its sub-path), e.g. `/grafana`."""
    host: NotRequired[str]
    """Served as its own site under this host name, e.g. `chat.example.com`."""
    port: NotRequired[int]
    """Served as its own site on this port of the edge (same name and certificate), for apps that want a root path."""


class CaddyFile(TypedDict):
    """A file uploaded into the container before it starts."""

    path: str
    """Absolute path in the container."""
    content: pulumi.Input[str]
    """File content."""
    secret: NotRequired[bool]
    """True for a private key: the content stays a Pulumi secret in the state."""


class CaddyPort(TypedDict):
    """A container port published on the host."""

    internal: int
    """Port Caddy listens on in the container."""
    external: int
    """Port on the host."""
    ip: NotRequired[str]
    """Host address the port is bound to (default 127.0.0.1: this host only)."""


class CaddyProxyArgs(TypedDict):
    """Inputs of a CaddyProxy."""

    network_name: pulumi.Input[str]
    """Docker network shared with the upstreams."""
    caddyfile: pulumi.Input[str]
    """The Caddyfile (from `render_relay_caddyfile` or `render_edge_caddyfile`); it must hold no secret."""
    files: NotRequired[list[CaddyFile]]
    """Certificate and key files (see `tls_files`)."""
    secret_envs: NotRequired[dict[str, pulumi.Input[str]]]
    """Envs the Caddyfile reads with `{env.NAME}` (bearer keys); always passed as secrets."""
    ports: NotRequired[list[CaddyPort]]
    """Published ports."""
    image: NotRequired[str]
    """Image override (default: the pinned caddy tag)."""
    hostname: NotRequired[str]
    """Network alias (default `caddy`); the container is named `<name_prefix>-<hostname>`, its volumes
    `<name_prefix>-<hostname>-data` and `-config`."""
    name_prefix: NotRequired[str]
    """Prefix of the container and volume names (e.g. the stack name); the network alias stays unprefixed."""


def _require(pattern: re.Pattern[str], value: str, what: str) -> str:
    # Every value lands in a Caddyfile: a brace, quote or newline would change its meaning.
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{what}: {value!r} is not allowed here")
    return value


def _address(value: str, what: str) -> str:
    """An IP address or DNS name, as Caddy and a certificate name it."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return _require(_HOST_NAME, value, what)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def split_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of a server certificate for these names, each list sorted and without repeats."""
    dns, ips = set(), set()
    for name in names:
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.add(_require(_HOST_NAME, name, "certificate name").lower())
    return sorted(dns), sorted(ips)


def relay_route_name(hostname: str) -> str:
    """The path segment of an engine behind a relay: its network alias, lowercased (paths match case-sensitively,
    aliases do not)."""
    return hostname.lower()


def relay_url(address: str, name: str, port: int = RELAY_PORT) -> str:
    """Where the gateway reaches one engine behind a relay: `https://10.0.0.2:8443/qwen3` (the engine's paths follow)."""
    host = _address(address, "relay address")
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{int(port)}/{_require(_ROUTE_NAME, name, 'relay route name')}"


def relay_api_base(address: str, route: RelayRoute, port: int = RELAY_PORT) -> str:
    """The api_base the gateway gives LiteLLM for an engine behind a relay, e.g. `https://10.0.0.2:8443/qwen3/v1`."""
    return relay_url(address, route["name"], port) + API_BASE_SUFFIX[route["engine"]]


def _global_options(lines: Sequence[str]) -> list[str]:
    return [
        "{",
        "\tadmin off",
        *(f"\t{line}" for line in lines),
        "\tservers {",
        # No HTTP/3: its UDP port is not published, so advertising it would only cost clients a try.
        "\t\tprotocols h1 h2",
        "\t\ttimeouts {",
        f"\t\t\tread_header {READ_HEADER_TIMEOUT}",
        f"\t\t\tidle {IDLE_TIMEOUT}",
        "\t\t}",
        "\t}",
        "}",
        "",
    ]


def _health_site(port: int) -> list[str]:
    return ["", f"http://:{port} {{", "\tbind 127.0.0.1", f"\trespond {HEALTH_PATH} 200", "}"]


def _request_body() -> list[str]:
    return ["\trequest_body {", f"\t\tmax_size {MAX_REQUEST_BODY}", "\t}"]


def _indent(lines: Sequence[str], depth: int) -> list[str]:
    return ["\t" * depth + line if line else line for line in lines]


def _check_routes(routes: Sequence[RelayRoute]) -> None:
    if not routes:
        raise ValueError("a relay needs at least one engine route")
    names = [r["name"] for r in routes]
    if len(set(names)) != len(names):
        raise ValueError(f"relay route names must be unique: {sorted(names)}")
    for r in routes:
        _require(_ROUTE_NAME, r["name"], "relay route name")
        if r["engine"] not in ENGINE_PATHS and r["engine"] != MONITOR_ONLY:
            raise ValueError(f"relay route {r['name']!r}: engine {r['engine']!r} is not one of {sorted([*ENGINE_PATHS, MONITOR_ONLY])}")
        if r["engine"] == MONITOR_ONLY and "monitor_path" not in r:
            raise ValueError(f"relay route {r['name']!r}: a {MONITOR_ONLY} route needs its monitor_path")
        if "monitor_path" in r:
            _require(_PATH, r["monitor_path"], f"relay route {r['name']!r}: monitor_path")
        _require(_UPSTREAM, r["upstream"], f"relay route {r['name']!r}: upstream")
        _require(_ENV_NAME, r["key_env"], f"relay route {r['name']!r}: key_env")


def _bearer_check(key_env: str) -> str:
    key = f"{{env.{key_env}}}"
    # An unset or empty key env refuses everything (HTTP/2 keeps a bare `Bearer ` header untrimmed).
    return f'`{key} != "" && {{http.request.header.Authorization}} == "Bearer " + {key}`'


def _proxy(route: RelayRoute, matcher: str, authorization: list[str]) -> list[str]:
    return [
        f"\t\treverse_proxy {matcher} {route['upstream']} {{",
        "\t\t\tflush_interval -1",
        *(f"\t\t\t{line}" for line in authorization),
        "\t\t\ttransport http {",
        f"\t\t\t\tdial_timeout {DIAL_TIMEOUT}",
        "\t\t\t}",
        "\t\t}",
    ]


def _relay_route(route: RelayRoute, monitor_key_env: Optional[str]) -> list[str]:
    lines = [f"handle_path /{route['name']}/* {{"]
    monitored = monitor_key_env is not None and "monitor_path" in route
    if monitored:
        assert monitor_key_env is not None
        lines += ["\t@monitor {", f"\t\tpath {route['monitor_path']}", f"\t\texpression {_bearer_check(monitor_key_env)}", "\t}"]
    paths = ENGINE_PATHS.get(route["engine"], ())
    lines.append(f"\t@unauthorized not expression {_bearer_check(route['key_env'])}")
    if paths:
        lines.append(f"\t@gateway path {' '.join(paths)}")
    # `route` keeps this order: Prometheus with the monitoring key on its one path, then the engine's key,
    # then the gateway's paths, then a refusal.
    lines.append("\troute {")
    own_key = "-Authorization" if route["engine"] in STRIP_AUTHORIZATION | {MONITOR_ONLY} else f'Authorization "Bearer {{env.{route["key_env"]}}}"'
    if monitored:
        lines += _proxy(route, "@monitor", [f"header_up {own_key}"])
    lines.append('\t\trespond @unauthorized "missing or wrong key" 401')
    if paths:
        lines += _proxy(route, "@gateway", ["header_up -Authorization"] if route["engine"] in STRIP_AUTHORIZATION else [])
    lines += ['\t\trespond "not forwarded" 403', "\t}", "}"]
    return lines


def render_relay_caddyfile(
    routes: Sequence[RelayRoute],
    *,
    server_name: str,
    port: int = RELAY_PORT,
    cert_file: str = CERT_FILE,
    key_file: str = KEY_FILE,
    health_port: int = HEALTH_PORT,
    monitor_key_env: Optional[str] = None,
) -> str:
    """The relay's Caddyfile: TLS on `port`, `/<route>/<path>` forwarded to the engine after its key is checked.

    `server_name` is the host address the gateway dials (in the certificate): the certificate Caddy picks for
    a client that sends no SNI, as clients do for an IP address. With `monitor_key_env`, each route's
    `monitor_path` is forwarded to a request bearing that env's key (Prometheus on the gateway's host).
    """
    _check_routes(routes)
    if monitor_key_env is not None:
        _require(_ENV_NAME, monitor_key_env, "monitor_key_env")
    lines = _global_options(["auto_https off", f"default_sni {_address(server_name, 'relay server_name')}"])
    lines += [f"https://:{int(port)} {{", f"\ttls {cert_file} {key_file}", *_request_body()]
    for route in sorted(routes, key=lambda r: r["name"]):
        lines += _indent(_relay_route(route, monitor_key_env), 1)
    lines += ["\thandle {", '\t\trespond "unknown engine" 404', "\t}", "}"]
    lines += _health_site(health_port)
    return "\n".join(lines) + "\n"


def _gateway_proxy(upstreams: Sequence[str], health_interval: str) -> list[str]:
    return [
        f"reverse_proxy {' '.join(upstreams)} {{",
        # Per request, not per client connection: each request goes to the next replica.
        "\tlb_policy round_robin",
        f"\tlb_try_duration {LB_TRY_DURATION}",
        f"\tlb_try_interval {LB_TRY_INTERVAL}",
        f"\tfail_duration {FAIL_DURATION}",
        f"\thealth_uri {GATEWAY_READINESS_PATH}",
        f"\thealth_interval {health_interval}",
        f"\thealth_timeout {GATEWAY_HEALTH_TIMEOUT}",
        "\tflush_interval -1",
        "\ttransport http {",
        f"\t\tdial_timeout {DIAL_TIMEOUT}",
        # A new connection per request: the workers of one replica share its socket and the kernel hands each
        # new connection to one of them, so no long-lived connection pins every request to one process.
        "\t\tkeepalive off",
        "\t}",
        "}",
    ]


def _plain_proxy(upstream: str) -> list[str]:
    return [f"reverse_proxy {upstream} {{", "\tflush_interval -1", "}"]


def _check_extra_routes(extra_routes: Sequence[ExtraRoute]) -> None:
    seen: set[str] = set()
    for r in extra_routes:
        if sum(key in r for key in ("path", "host", "port")) != 1:
            raise ValueError(f"edge route to {r.get('upstream')!r}: give exactly one of path, host or port")
        where = r.get("path") or r.get("host") or f":{r.get('port')}"
        if "path" in r:
            _require(_PATH, r["path"], "edge route path")
        elif "host" in r:
            _address(r["host"], "edge route host")
        elif not 1 <= int(r["port"]) <= 65535:
            raise ValueError(f"edge route port {r['port']!r} is not a port")
        if where in seen:
            raise ValueError(f"edge route {where!r} is given twice")
        seen.add(where)
        _require(_UPSTREAM, r["upstream"], f"edge route {where!r}: upstream")


def render_edge_caddyfile(
    *,
    tls: Literal["acme", "internal", "off"],
    upstreams: Sequence[str],
    domain: Optional[str] = None,
    email: Optional[str] = None,
    extra_routes: Sequence[ExtraRoute] = (),
    https_port: int = EDGE_HTTPS_PORT,
    http_port: int = EDGE_HTTP_PORT,
    cert_file: str = CERT_FILE,
    key_file: str = KEY_FILE,
    health_port: int = HEALTH_PORT,
    health_interval: str = GATEWAY_HEALTH_INTERVAL,
) -> str:
    """The edge's Caddyfile: the gateway replicas behind one name, plus web UIs and dashboards by path or host.

    `acme`: certificates from Let's Encrypt for `domain` (and route hosts), HTTP redirected to HTTPS, HSTS.
    `internal`: the stack CA's certificate from files (its names: `domain` and every route host).
    `off`: plain HTTP on `http_port`, for a laptop.
    """
    if not upstreams:
        raise ValueError("the edge needs at least one gateway upstream")
    for u in upstreams:
        _require(_UPSTREAM, u, "gateway upstream")
    if len(set(upstreams)) != len(upstreams):
        raise ValueError(f"gateway upstreams must be unique: {list(upstreams)}")
    _check_extra_routes(extra_routes)
    if tls == "acme":
        if not domain or not email:
            raise ValueError("tls: acme needs a domain and an email")
        _require(_EMAIL, email, "acme email")
        if _is_ip(domain):
            raise ValueError(f"tls: acme needs a DNS name, not the address {domain!r}")
        options = [f"email {email}"]
        options += [] if https_port == EDGE_HTTPS_PORT else [f"https_port {int(https_port)}"]
        options += [] if http_port == EDGE_HTTP_PORT else [f"http_port {int(http_port)}"]
        main_site, site_of = domain, (lambda host: host)
        site_head = ["\theader Strict-Transport-Security " + f'"{HSTS}"']
    elif tls == "internal":
        if not domain:
            raise ValueError("tls: internal needs a domain (the name or address clients use)")
        options = ["auto_https off", f"default_sni {_address(domain, 'edge domain')}"]
        main_site, site_of = f"https://:{int(https_port)}", (lambda host: f"https://{host}:{int(https_port)}")
        site_head = [f"\ttls {cert_file} {key_file}"]
    elif tls == "off":
        options = ["auto_https off"]
        main_site, site_of = f"http://:{int(http_port)}", (lambda host: f"http://{host}:{int(http_port)}")
        site_head = []
    else:
        raise ValueError(f"tls must be acme, internal or off, not {tls!r}")

    lines = _global_options(options)
    lines += [f"{main_site} {{", *site_head, *_request_body()]
    for index, r in enumerate(sorted((r for r in extra_routes if "path" in r), key=lambda r: r["path"])):
        lines += [
            f"\t@extra{index} path {r['path']} {r['path']}/*",
            f"\thandle @extra{index} {{",
            *_indent(_plain_proxy(r["upstream"]), 2),
            "\t}",
        ]
    lines += ["\thandle {", *_indent(_gateway_proxy(upstreams, health_interval), 2), "\t}", "}"]
    for r in sorted((r for r in extra_routes if "host" in r), key=lambda r: r["host"]):
        lines += ["", f"{site_of(r['host'])} {{", *site_head, *_request_body(), *_indent(_plain_proxy(r["upstream"]), 1), "}"]
    for r in sorted((r for r in extra_routes if "port" in r), key=lambda r: int(r["port"])):
        if int(r["port"]) in (https_port, http_port, health_port):
            raise ValueError(f"edge route port {r['port']} is one of the edge's own ports")
        site = f"{domain}:{int(r['port'])}" if tls == "acme" else f"{'http' if tls == 'off' else 'https'}://:{int(r['port'])}"
        lines += ["", f"{site} {{", *site_head, *_request_body(), *_indent(_plain_proxy(r["upstream"]), 1), "}"]
    lines += _health_site(health_port)
    return "\n".join(lines) + "\n"


def tls_files(cert_pem: pulumi.Input[str], private_key_pem: pulumi.Input[str]) -> list[CaddyFile]:
    """The certificate and its key where the rendered Caddyfiles read them; the key is uploaded as a secret."""
    return [
        {"path": CERT_FILE, "content": cert_pem},
        {"path": KEY_FILE, "content": private_key_pem, "secret": True},
    ]


def checked_caddyfile(caddyfile: str, secrets: Sequence[str]) -> str:
    """The Caddyfile, refused if it holds any of these secret values (they would land in plaintext in the state)."""
    if any(s and s in caddyfile for s in secrets):
        raise ValueError("the Caddyfile holds a secret value: read it from an env with {env.NAME} instead")
    return caddyfile


class CaddyProxy(pulumi.ComponentResource):
    """A pinned Caddy container running a generated Caddyfile, with its certificates, secret envs and ports."""

    caddyfile: pulumi.Output[str]
    """The Caddyfile uploaded into the container (holds no secret)."""

    def __init__(self, name: str, args: CaddyProxyArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:CaddyProxy", name, {}, opts)
        hostname = args.get("hostname") or "caddy"
        prefix = container.docker_name(args.get("name_prefix"), hostname)
        secret_envs: Mapping[str, pulumi.Input[str]] = args.get("secret_envs") or {}
        for env in secret_envs:
            _require(_ENV_NAME, env, "secret env name")
        self.caddyfile = pulumi.Output.all(
            pulumi.Output.from_input(args["caddyfile"]), *[pulumi.Output.from_input(v) for v in secret_envs.values()]
        ).apply(lambda values: checked_caddyfile(values[0], values[1:]))
        # The check above reads the secrets; the Caddyfile itself stays plain so a diff shows it.
        self.caddyfile = pulumi.Output.unsecret(self.caddyfile)

        paths = [CADDYFILE_PATH, *(f["path"] for f in args.get("files") or [])]
        if len(set(paths)) != len(paths):
            raise ValueError(f"files uploaded twice: {sorted(paths)}")
        uploads = [docker.ContainerUploadArgs(file=CADDYFILE_PATH, content=self.caddyfile)]
        for f in sorted(args.get("files") or [], key=lambda f: f["path"]):
            content = pulumi.Output.secret(f["content"]) if f.get("secret") else f["content"]
            uploads.append(docker.ContainerUploadArgs(file=f["path"], content=content))

        data = container.retained_volume(f"{name}-data", f"{prefix}-data", "caddy", self)
        config = container.retained_volume(f"{name}-config", f"{prefix}-config", "caddy", self)
        self.container = container.service_container(
            name,
            parent=self,
            container_name=prefix,
            image=container.pinned_image(f"{name}-image", args.get("image") or IMAGE, self),
            network_name=args["network_name"],
            aliases=[hostname],
            command=COMMAND,
            envs=container.container_envs({}, secret_envs),
            health=container.healthcheck(HEALTH_TEST, HEALTH_START_PERIOD),
            component="caddy",
            volumes=[
                docker.ContainerVolumeArgs(volume_name=data.name, container_path=DATA_PATH),
                docker.ContainerVolumeArgs(volume_name=config.name, container_path=CONFIG_PATH),
            ],
            ports=[
                docker.ContainerPortArgs(internal=int(p["internal"]), external=int(p["external"]), ip=p.get("ip") or "127.0.0.1")
                for p in args.get("ports") or []
            ],
            uploads=uploads,
            depends_on=container.depends_on_of(opts),
        )
        self.register_outputs({"caddyfile": self.caddyfile})
