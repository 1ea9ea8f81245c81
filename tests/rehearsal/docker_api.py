"""The ONE mapping from recorded pulumi-docker 5.2 inputs to the Docker Engine API.

A record is what the rehearsal's mocks saw the program register::

    {"type": "docker:index/container:Container", "name": "<pulumi resource name>",
     "inputs": {... camelCase, exactly as pulumi-docker receives them ...},
     "retainOnDelete": bool,            # optional, default False
     "outputs": {...},                  # optional; a RemoteImage's `imageId` feeds `image_map`
     "provider": "host-<name>",         # optional; its Docker provider: `engines` maps it to an engine
     "dependsOn": ["<resource name>"]}  # optional; `up(..., concurrency=N)` creates a resource once
                                        # these are created (and healthy), like `pulumi up`

Pure functions (`network_body`, `volume_body`, `container_spec`, `image_spec`, `command_spec`,
`plan`) turn records into Engine API request bodies and fail loudly, naming the resource and the
key, on any input they do not handle: every key of every type is in a HANDLED or an IGNORED set
(with the reason it may be ignored), nothing is dropped silently. `up` / `destroy` / `cleanup` /
`leftover_volumes` run them against an engine through a small client (`Engine`) that speaks raw
HTTP over the unix socket: no dependency beyond the standard library. With several Docker hosts
(issue 14), `engines` maps each record's `provider` (the program's Docker provider of its host,
`host-<name>`) to the engine standing in for that host: every record goes to its own engine, and
`cleanup` / `leftover_volumes` cover every engine.

Everything the rehearsal adds on top of the program's inputs goes through `container_spec`'s
keyword arguments (the stand-in bind mounts, env overrides, the run label) and is listed in
`ContainerSpec.rehearsal_additions`.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import io
import json
import os
import posixpath
import re
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Optional

# ---------------------------------------------------------------------------------------------
# Constants

#: Label on every network, volume and container a rehearsal creates; its value is the run label.
REHEARSAL_LABEL = "llmstack.rehearsal"
DEFAULT_RUN_LABEL = "rehearsal"

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
LOCAL_COMMAND = "command:local:Command"
DOCKER_PROVIDER = "pulumi:providers:docker"
#: Engine B of the two-host rehearsal (`dockerd.sh b`); engine A is DOCKER_HOST's (default /var/run/docker.sock).
ENGINE_B_SOCKET = "/run/llmstack-b/docker.sock"

#: Types `up` skips by default: the provider (the rehearsal always targets the local engine) and
#: random values (already resolved into the inputs that use them). Anything else unknown fails.
DEFAULT_IGNORED_TYPE_PREFIXES = ("pulumi:providers:", "random:", "pulumi:pulumi:Stack")

# pulumi's wire sentinels
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

MIB = 1024 * 1024

# --- Container: top-level keys ------------------------------------------------------------------
CONTAINER_HANDLED = frozenset({
    "name", "image", "command", "entrypoints", "envs", "networksAdvanced", "volumes", "ports",
    "uploads", "healthcheck", "restart", "maxRetryCount", "labels", "ipcMode", "shmSize", "user",
    "workingDir", "hostname", "memory", "memorySwap", "init", "stopSignal", "stopTimeout",
    "logDriver", "logOpts", "tmpfs", "ulimits", "rm",
    # lifecycle, not create-body fields:
    "wait",                 # -> wait for `healthy` after start (bounded by waitTimeout)
    "waitTimeout",          # seconds (provider default 60)
    "mustRun",              # -> after start/wait the container must be running
    "start",                # -> start after create (provider default true)
    "destroyGraceSeconds",  # -> stop timeout on destroy
    "removeVolumes",        # -> remove anonymous volumes with the container (default true)
    # validated, then left out: no GPU on a rehearsal machine
    "deviceRequests", "gpus",
})
CONTAINER_IGNORED: Mapping[str, str] = {
    "containerReadRefreshTimeoutMilliseconds": "provider-side refresh timing",
    "logs": "provider-side: collect logs of a non-running container into state",
    "attach": "provider-side: attach to a non-running container",
}
NETWORK_ADV_HANDLED = frozenset({"name", "aliases", "ipv4Address", "ipv6Address"})
VOLUME_MOUNT_HANDLED = frozenset({"volumeName", "containerPath", "readOnly", "hostPath"})
PORT_HANDLED = frozenset({"internal", "external", "ip", "protocol"})
UPLOAD_HANDLED = frozenset({"file", "content", "contentBase64", "executable", "permissions", "owner", "group"})
HEALTH_HANDLED = frozenset({"tests", "interval", "timeout", "retries", "startPeriod", "startInterval"})
LABEL_HANDLED = frozenset({"label", "value"})
DEVICE_REQUEST_HANDLED = frozenset({"driver", "capabilities", "deviceIds", "count"})
ULIMIT_HANDLED = frozenset({"name", "soft", "hard"})
RESTART_POLICIES = frozenset({"no", "always", "unless-stopped", "on-failure"})

# --- Network / Volume / RemoteImage / local Command ---------------------------------------------
NETWORK_HANDLED = frozenset({"name", "driver", "ipamConfigs", "ipamDriver", "labels", "internal",
                             "attachable", "ipv6", "options"})
NETWORK_IGNORED: Mapping[str, str] = {"checkDuplicate": "the engine refuses duplicate names anyway"}
IPAM_HANDLED = frozenset({"subnet", "gateway", "ipRange", "auxAddress"})
VOLUME_HANDLED = frozenset({"name", "driver", "driverOpts", "labels"})
VOLUME_IGNORED: Mapping[str, str] = {}
IMAGE_HANDLED = frozenset({"name"})  # -> must exist locally as a stand-in
IMAGE_IGNORED: Mapping[str, str] = {
    "keepLocally": "only decides whether destroy removes the image; stand-in images stay",
    "pullTriggers": "only forces a re-pull; nothing is pulled in a rehearsal",
    "triggers": "only forces a replacement",
    "forceRemove": "only matters when destroy removes the image",
}
COMMAND_HANDLED = frozenset({"create", "delete", "environment", "dir", "interpreter"})
COMMAND_IGNORED: Mapping[str, str] = {
    "triggers": "only forces a replacement (re-run of create)",
    "update": "runs on update only; a rehearsal only creates",
    "logging": "only what pulumi-command logs",
}


class RehearsalError(RuntimeError):
    """Any failure of the rehearsal's Docker side."""


class UnhandledInput(RehearsalError):
    """A recorded input the mapping does not handle: the rehearsal must not drop it silently."""

    def __init__(self, resource: str, key: str, detail: str = ""):
        self.resource, self.key = resource, key
        super().__init__(
            f"{resource}: input {key!r} is not handled by tests/rehearsal/docker_api.py"
            + (f" ({detail})" if detail else "")
            + ": map it to the Engine API or list it as ignored with a reason"
        )


# ---------------------------------------------------------------------------------------------
# Small pure helpers

_DURATION_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                      "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: str) -> int:
    """Nanoseconds in a Go duration string (`time.ParseDuration`): "30s", "15m", "1h30m", "1.5s", "0"."""
    if not isinstance(value, str):
        raise ValueError(f"not a duration string: {value!r}")
    text = value
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f"not a duration: {value!r}")
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValueError(f"not a duration: {value!r} (Go syntax, e.g. 30s, 15m, 1h30m)")
        total += float(m.group(1)) * _DURATION_UNITS_NS[m.group(2)]
        pos = m.end()
    return sign * int(round(total))


def unwrap(value: Any, where: str = "") -> Any:
    """Inputs with pulumi's secret (and output-value) wrappers removed; unknowns fail."""
    if isinstance(value, dict):
        sig = value.get(_SIG_KEY)
        if sig == _SECRET_SIG:
            return unwrap(value.get("value"), where)
        if sig == _OUTPUT_SIG:
            if "value" not in value:
                raise RehearsalError(f"{where}: unknown output value (recorded during a preview?)")
            return unwrap(value["value"], where)
        if sig is not None:
            raise RehearsalError(f"{where}: unsupported pulumi wire value (signature {sig})")
        return {k: unwrap(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value == _UNKNOWN:
        raise RehearsalError(f"{where}: unknown value (recorded during a preview?)")
    return value


def as_int(value: Any, where: str) -> int:
    """Numbers arrive over the wire as floats (6379.0): integral ones become ints, others fail."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RehearsalError(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise RehearsalError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    return value


def _present(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Keys that are set (None means not set)."""
    return {k: v for k, v in inputs.items() if v is not None}


def check_keys(resource: str, inputs: Mapping[str, Any], handled: Iterable[str],
               ignored: Mapping[str, str] = {}) -> dict[str, Any]:
    """The set inputs; raises `UnhandledInput` for the first key neither handled nor ignored."""
    handled = set(handled)
    present = _present(inputs)
    for key in sorted(present):
        if key not in handled and key not in ignored:
            raise UnhandledInput(resource, key)
    return {k: v for k, v in present.items() if k in handled}


def _list_of_dicts(resource: str, key: str, value: Any) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise RehearsalError(f"{resource}: {key} must be a list of objects, got {value!r}")
    return value


def _str_list(resource: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RehearsalError(f"{resource}: {key} must be a flat list of strings, got {value!r}")
    return value


def _labels(resource: str, key: str, value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, item in enumerate(_list_of_dicts(resource, key, value)):
        item = check_keys(f"{resource}.{key}[{i}]", item, LABEL_HANDLED)
        out[str(item["label"])] = str(item.get("value", ""))
    return out


def _name(record: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    name = inputs.get("name")
    if not isinstance(name, str) or not name:
        raise RehearsalError(f"{record['name']}: no `name` input; the rehearsal needs the Docker name the program sets")
    return name


def _inputs(record: Mapping[str, Any]) -> dict[str, Any]:
    return unwrap(dict(record.get("inputs") or {}), record["name"])


# ---------------------------------------------------------------------------------------------
# Which engine a record goes to


def provider_of(record: Mapping[str, Any]) -> str:
    """The name of the record's Docker provider (`host-<name>`), or "" when it names none."""
    return str(record.get("provider") or "")


def provider_sockets(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Docker provider name -> the unix socket its `host` input names, from the `pulumi:providers:docker`
    records: where the program would send each host's resources. Anything but unix:// fails (the
    rehearsal's hosts are engines on this machine)."""
    out: dict[str, str] = {}
    for rec in records:
        if rec.get("type") != DOCKER_PROVIDER:
            continue
        host = _inputs(rec).get("host")
        if not isinstance(host, str) or not host.startswith("unix://"):
            raise RehearsalError(f"{rec['name']}: Docker host {host!r} is not a unix:// socket; "
                                 f"the rehearsal's hosts are engines on this machine")
        out[rec["name"]] = host[len("unix://"):]
    return out


def engine_for(record: Mapping[str, Any], engine: "Engine", engines: Optional[Mapping[str, "Engine"]]) -> "Engine":
    """The engine of a record: `engines[its provider]` when `engines` is given (a provider without one
    fails: it would land on the wrong host), else `engine`. A record naming no provider goes to `engine`."""
    provider = provider_of(record)
    if not engines or not provider:
        return engine
    if provider not in engines:
        raise RehearsalError(f"{record['name']}: its Docker provider {provider!r} has no engine "
                             f"(engines for: {sorted(engines)})")
    return engines[provider]


def distinct_engines(engine: "Engine", engines: Optional[Mapping[str, "Engine"]]) -> list["Engine"]:
    """`engine` and every engine of `engines`, each socket once."""
    out: dict[str, Engine] = {engine.socket_path: engine}
    for e in (engines or {}).values():
        out.setdefault(e.socket_path, e)
    return list(out.values())


# ---------------------------------------------------------------------------------------------
# Networks, volumes, images, local commands


def network_body(record: Mapping[str, Any], *, run_label: str = DEFAULT_RUN_LABEL) -> dict[str, Any]:
    """POST /networks/create body."""
    res = record["name"]
    inputs = check_keys(res, _inputs(record), NETWORK_HANDLED, NETWORK_IGNORED)
    body: dict[str, Any] = {"Name": _name(record, inputs), "Driver": inputs.get("driver", "bridge"),
                            "CheckDuplicate": True}
    ipam: dict[str, Any] = {"Driver": inputs.get("ipamDriver", "default"), "Config": []}
    for i, cfg in enumerate(_list_of_dicts(res, "ipamConfigs", inputs.get("ipamConfigs", []))):
        cfg = check_keys(f"{res}.ipamConfigs[{i}]", cfg, IPAM_HANDLED)
        entry = {"Subnet": cfg.get("subnet"), "Gateway": cfg.get("gateway"), "IPRange": cfg.get("ipRange"),
                 "AuxiliaryAddresses": cfg.get("auxAddress")}
        ipam["Config"].append({k: v for k, v in entry.items() if v})
    body["IPAM"] = ipam
    for key, api in (("internal", "Internal"), ("attachable", "Attachable"), ("ipv6", "EnableIPv6")):
        if key in inputs:
            body[api] = bool(inputs[key])
    if "options" in inputs:
        body["Options"] = {str(k): str(v) for k, v in inputs["options"].items()}
    labels = _labels(res, "labels", inputs["labels"]) if "labels" in inputs else {}
    body["Labels"] = {**labels, REHEARSAL_LABEL: run_label}
    return body


def volume_body(record: Mapping[str, Any], *, run_label: str = DEFAULT_RUN_LABEL) -> dict[str, Any]:
    """POST /volumes/create body."""
    res = record["name"]
    inputs = check_keys(res, _inputs(record), VOLUME_HANDLED, VOLUME_IGNORED)
    body: dict[str, Any] = {"Name": _name(record, inputs), "Driver": inputs.get("driver", "local")}
    if "driverOpts" in inputs:
        body["DriverOpts"] = {str(k): str(v) for k, v in inputs["driverOpts"].items()}
    labels = _labels(res, "labels", inputs["labels"]) if "labels" in inputs else {}
    body["Labels"] = {**labels, REHEARSAL_LABEL: run_label}
    return body


def image_spec(record: Mapping[str, Any]) -> str:
    """The image name (tag) a RemoteImage asks for; it must exist locally as a stand-in."""
    inputs = check_keys(record["name"], _inputs(record), IMAGE_HANDLED, IMAGE_IGNORED)
    return _name(record, inputs)


def image_map(records: Iterable[Mapping[str, Any]], image_ids: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """image reference seen in a Container's `image` -> stand-in tag.

    Built from the RemoteImage records: each one's tag maps to itself; a record's
    `outputs["imageId"]` (what the mocks returned) maps to its tag; `image_ids` adds
    {resource name of the RemoteImage: image id the mocks returned} for recorders that keep
    outputs elsewhere.
    """
    image_ids = dict(image_ids or {})
    out: dict[str, str] = {}
    for rec in records:
        if rec.get("type") != REMOTE_IMAGE:
            continue
        tag = image_spec(rec)
        out[tag] = tag
        for image_id in ((rec.get("outputs") or {}).get("imageId"), image_ids.get(rec["name"])):
            if image_id:
                if out.get(image_id, tag) != tag:
                    raise RehearsalError(f"image id {image_id!r} maps to both {out[image_id]!r} and {tag!r}")
                out[image_id] = tag
    return out


@dataclasses.dataclass
class CommandSpec:
    resource: str
    create: Optional[str]
    delete: Optional[str]
    environment: dict[str, str]
    dir: Optional[str]
    interpreter: list[str]


def command_spec(record: Mapping[str, Any]) -> CommandSpec:
    """A pulumi-command `command:local:Command`: run on this host like the provider does."""
    res = record["name"]
    inputs = check_keys(res, _inputs(record), COMMAND_HANDLED, COMMAND_IGNORED)
    env = inputs.get("environment", {})
    if not isinstance(env, dict):
        raise RehearsalError(f"{res}: environment must be a map, got {env!r}")
    interpreter = inputs.get("interpreter") or ["/bin/sh", "-c"]
    return CommandSpec(res, inputs.get("create"), inputs.get("delete"),
                       {str(k): str(v) for k, v in env.items()}, inputs.get("dir"),
                       _str_list(res, "interpreter", interpreter))


def run_command(spec: CommandSpec, which: str, *, timeout: float = 3600, log: Callable[[str], None] = print) -> str:
    """Run a command's `create` or `delete` on this host (host env + its `environment`); fail with its output."""
    script = getattr(spec, which)
    if not script:
        return ""
    env = {**os.environ, **spec.environment}
    log(f"[rehearsal] {spec.resource}: running {which}")
    proc = subprocess.run([*spec.interpreter, script], env=env, cwd=spec.dir, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RehearsalError(f"{spec.resource}: {which} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                             f"\n--- stderr\n{proc.stderr[-4000:]}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# Containers


@dataclasses.dataclass
class Upload:
    path: str          # absolute path of the file in the container
    data: bytes
    mode: int
    uid: int = 0
    gid: int = 0

    def archive(self) -> tuple[str, bytes]:
        """(directory to PUT into, tar with the one file), as the provider does it: the tar names the file's
        whole path and is extracted at `/`, so Docker creates missing directories (root-owned, 0755).
        (kreuzwerker/terraform-provider-docker, resource_docker_container_funcs.go: `tar.Header{Name: file}`,
        `CopyToContainer(ctx, id, "/", ...)`.)"""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(self.path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(self.data), self.mode, self.uid, self.gid
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(self.data))
        return "/", buf.getvalue()


@dataclasses.dataclass
class ContainerSpec:
    resource: str                                   # pulumi resource name
    name: str                                       # docker container name
    body: dict[str, Any]                            # POST /containers/create?name=<name>
    extra_networks: list[tuple[str, dict[str, Any]]]  # connected after create, before start
    uploads: list[Upload]
    start: bool = True
    wait: bool = False
    wait_timeout: float = 60.0
    must_run: bool = True
    stop_timeout: Optional[int] = None              # destroyGraceSeconds
    remove_volumes: bool = True
    left_out: list[str] = dataclasses.field(default_factory=list)          # validated, not applied (GPUs)
    rehearsal_additions: list[str] = dataclasses.field(default_factory=list)


def _device_requests(res: str, value: Any) -> list[str]:
    notes = []
    for i, req in enumerate(_list_of_dicts(res, "deviceRequests", value)):
        where = f"{res}.deviceRequests[{i}]"
        req = check_keys(where, req, DEVICE_REQUEST_HANDLED)
        if req.get("driver") != "nvidia":
            raise RehearsalError(f"{where}: driver must be 'nvidia' (the schema default is 'cdi'), got {req.get('driver')!r}")
        caps = req.get("capabilities")
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps) or "gpu" not in caps:
            raise RehearsalError(f"{where}: capabilities must be a flat list of strings containing 'gpu', got {caps!r}")
        has_ids, has_count = "deviceIds" in req, "count" in req
        if has_ids == has_count:
            raise RehearsalError(f"{where}: exactly one of deviceIds and count must be set, got {req!r}")
        if has_ids:
            ids = req["deviceIds"]
            if not isinstance(ids, list) or not ids or not all(isinstance(d, str) and d for d in ids):
                raise RehearsalError(f"{where}: deviceIds must be a non-empty list of strings, got {ids!r}")
            notes.append(f"deviceRequests[{i}]: nvidia gpu devices {ids} (left out: no GPU here)")
        else:
            if as_int(req["count"], f"{where}.count") != -1:
                raise RehearsalError(f"{where}: count must be -1 (all GPUs), got {req['count']!r}")
            notes.append(f"deviceRequests[{i}]: all nvidia gpus (left out: no GPU here)")
    return notes


def _healthcheck(res: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RehearsalError(f"{res}: healthcheck must be an object, got {value!r}")
    hc = check_keys(f"{res}.healthcheck", value, HEALTH_HANDLED)
    tests = _str_list(res, "healthcheck.tests", hc.get("tests"))
    if not tests or tests[0] not in ("CMD", "CMD-SHELL", "NONE"):
        raise RehearsalError(f"{res}: healthcheck.tests must start with CMD, CMD-SHELL or NONE, got {tests!r}")
    out: dict[str, Any] = {"Test": tests}
    for key, api in (("interval", "Interval"), ("timeout", "Timeout"), ("startPeriod", "StartPeriod"),
                     ("startInterval", "StartInterval")):
        if key in hc:
            try:
                out[api] = parse_duration(hc[key])
            except ValueError as e:
                raise RehearsalError(f"{res}: healthcheck.{key}: {e}") from None
    if "retries" in hc:
        out["Retries"] = as_int(hc["retries"], f"{res}.healthcheck.retries")
    return out


def _upload(res: str, i: int, item: Mapping[str, Any]) -> Upload:
    where = f"{res}.uploads[{i}]"
    item = check_keys(where, item, UPLOAD_HANDLED)
    path = item.get("file")
    if not isinstance(path, str) or not path.startswith("/"):
        raise RehearsalError(f"{where}: file must be an absolute path, got {path!r}")
    if ("content" in item) == ("contentBase64" in item):
        raise RehearsalError(f"{where}: exactly one of content and contentBase64 must be set")
    data = item["content"].encode() if "content" in item else base64.b64decode(item["contentBase64"])
    mode = 0o744 if item.get("executable") else 0o644   # the provider's defaults
    if "permissions" in item:
        try:
            mode = int(str(item["permissions"]), 8)
        except ValueError:
            raise RehearsalError(f"{where}: permissions must be an octal mode, got {item['permissions']!r}") from None
    ids = []
    for key in ("owner", "group"):
        v = str(item.get(key, "0"))
        if not v.isdigit():
            raise UnhandledInput(where, key, f"only numeric ids are mapped, got {v!r}")
        ids.append(int(v))
    return Upload(path, data, mode, ids[0], ids[1])


def container_spec(
    record: Mapping[str, Any],
    *,
    images: Mapping[str, str],
    binds: Sequence[str] = (),
    env_overrides: Optional[Mapping[str, Optional[str]]] = None,
    run_label: str = DEFAULT_RUN_LABEL,
) -> ContainerSpec:
    """Engine API calls for one recorded Container.

    images: image reference in the record (the mocks' fake image id, or a tag) -> local stand-in tag.
    binds: rehearsal bind mounts ("host:container:ro") added to every container (see standin_images).
    env_overrides: rehearsal changes to this container's env: KEY -> value, or None to remove KEY.
    """
    res = record["name"]
    raw = _inputs(record)
    inputs = check_keys(res, raw, CONTAINER_HANDLED, CONTAINER_IGNORED)
    name = _name(record, inputs)
    body: dict[str, Any] = {}
    host: dict[str, Any] = {}
    additions: list[str] = []

    image_ref = inputs.get("image")
    if image_ref not in images:
        raise RehearsalError(f"{res}: image {image_ref!r} is not a known stand-in image "
                             f"(known: {sorted(set(images.values()))}); pass the RemoteImage id -> tag map")
    body["Image"] = images[image_ref]

    if "command" in inputs:
        body["Cmd"] = _str_list(res, "command", inputs["command"])
    if "entrypoints" in inputs:
        body["Entrypoint"] = _str_list(res, "entrypoints", inputs["entrypoints"])
    if "user" in inputs:
        body["User"] = str(inputs["user"])
    if "workingDir" in inputs:
        body["WorkingDir"] = str(inputs["workingDir"])
    if "hostname" in inputs:
        body["Hostname"] = str(inputs["hostname"])
    if "stopSignal" in inputs:
        body["StopSignal"] = str(inputs["stopSignal"])
    if "stopTimeout" in inputs:
        body["StopTimeout"] = as_int(inputs["stopTimeout"], f"{res}.stopTimeout")

    envs = _str_list(res, "envs", inputs.get("envs", []))
    for e in envs:
        if "=" not in e:
            raise RehearsalError(f"{res}: env entry without '=': {e.split('=')[0]!r}")
    if env_overrides:
        by_key = {e.split("=", 1)[0]: e for e in envs}
        for key, value in env_overrides.items():
            if value is None:
                by_key.pop(key, None)
                additions.append(f"env {key} removed")
            else:
                by_key[key] = f"{key}={value}"
                additions.append(f"env {key} set")
        envs = list(by_key.values())
    if envs or "envs" in inputs:
        body["Env"] = envs

    labels = _labels(res, "labels", inputs["labels"]) if "labels" in inputs else {}
    body["Labels"] = {**labels, REHEARSAL_LABEL: run_label}
    additions.append(f"label {REHEARSAL_LABEL}={run_label}")

    # volumes (+ the rehearsal's read-only bind mounts)
    mounts: list[str] = []
    for i, v in enumerate(_list_of_dicts(res, "volumes", inputs.get("volumes", []))):
        where = f"{res}.volumes[{i}]"
        v = check_keys(where, v, VOLUME_MOUNT_HANDLED)
        if ("volumeName" in v) == ("hostPath" in v):
            raise RehearsalError(f"{where}: exactly one of volumeName and hostPath must be set, got {v!r}")
        target = v.get("containerPath")
        if not isinstance(target, str) or not target.startswith("/"):
            raise RehearsalError(f"{where}: containerPath must be an absolute path, got {target!r}")
        mounts.append(f"{v.get('volumeName') or v.get('hostPath')}:{target}" + (":ro" if v.get("readOnly") else ""))
    if binds:
        mounts.extend(binds)
        additions.append(f"{len(binds)} read-only bind mounts of the host's binaries")
    if mounts:
        host["Binds"] = mounts

    # ports
    if "ports" in inputs:
        exposed: dict[str, dict] = {}
        bindings: dict[str, list] = {}
        for i, p in enumerate(_list_of_dicts(res, "ports", inputs["ports"])):
            where = f"{res}.ports[{i}]"
            p = check_keys(where, p, PORT_HANDLED)
            proto = p.get("protocol", "tcp")
            key = f"{as_int(p.get('internal'), where + '.internal')}/{proto}"
            exposed[key] = {}
            external = p.get("external")
            bindings.setdefault(key, []).append({
                "HostIp": p.get("ip", "0.0.0.0"),   # the provider's default
                "HostPort": str(as_int(external, where + ".external")) if external is not None else "",
            })
        body["ExposedPorts"] = exposed
        host["PortBindings"] = bindings

    # networks: the first at create (also the network mode), the others connected before start
    extra_networks: list[tuple[str, dict[str, Any]]] = []
    nets = _list_of_dicts(res, "networksAdvanced", inputs.get("networksAdvanced", []))
    for i, n in enumerate(nets):
        where = f"{res}.networksAdvanced[{i}]"
        n = check_keys(where, n, NETWORK_ADV_HANDLED)
        if not isinstance(n.get("name"), str):
            raise RehearsalError(f"{where}: name missing")
        endpoint: dict[str, Any] = {}
        if "aliases" in n:
            endpoint["Aliases"] = _str_list(where, "aliases", n["aliases"])
        ipam = {k: n[src] for src, k in (("ipv4Address", "IPv4Address"), ("ipv6Address", "IPv6Address")) if src in n}
        if ipam:
            endpoint["IPAMConfig"] = ipam
        if i == 0:
            host["NetworkMode"] = n["name"]
            body["NetworkingConfig"] = {"EndpointsConfig": {n["name"]: endpoint}}
        else:
            extra_networks.append((n["name"], endpoint))

    if "healthcheck" in inputs:
        body["Healthcheck"] = _healthcheck(res, inputs["healthcheck"])

    if "restart" in inputs:
        policy = inputs["restart"]
        if policy not in RESTART_POLICIES:
            raise RehearsalError(f"{res}: restart must be one of {sorted(RESTART_POLICIES)}, got {policy!r}")
        host["RestartPolicy"] = {"Name": "" if policy == "no" else policy}
        if "maxRetryCount" in inputs:
            host["RestartPolicy"]["MaximumRetryCount"] = as_int(inputs["maxRetryCount"], f"{res}.maxRetryCount")
    elif "maxRetryCount" in inputs:
        raise RehearsalError(f"{res}: maxRetryCount without restart='on-failure'")

    if "ipcMode" in inputs:
        host["IpcMode"] = str(inputs["ipcMode"])
    if "shmSize" in inputs:
        host["ShmSize"] = as_int(inputs["shmSize"], f"{res}.shmSize") * MIB
    if "memory" in inputs:
        host["Memory"] = as_int(inputs["memory"], f"{res}.memory") * MIB
    if "memorySwap" in inputs:
        swap = as_int(inputs["memorySwap"], f"{res}.memorySwap")
        host["MemorySwap"] = swap * MIB if swap > 0 else swap
    if "init" in inputs:
        host["Init"] = bool(inputs["init"])
    if "rm" in inputs:
        host["AutoRemove"] = bool(inputs["rm"])
    if "logDriver" in inputs or "logOpts" in inputs:
        host["LogConfig"] = {"Type": inputs.get("logDriver", "json-file"),
                             "Config": {str(k): str(v) for k, v in (inputs.get("logOpts") or {}).items()}}
    if "tmpfs" in inputs:
        host["Tmpfs"] = {str(k): str(v) for k, v in inputs["tmpfs"].items()}
    if "ulimits" in inputs:
        host["Ulimits"] = []
        for i, u in enumerate(_list_of_dicts(res, "ulimits", inputs["ulimits"])):
            u = check_keys(f"{res}.ulimits[{i}]", u, ULIMIT_HANDLED)
            host["Ulimits"].append({"Name": u["name"], "Soft": as_int(u["soft"], f"{res}.ulimits[{i}].soft"),
                                    "Hard": as_int(u["hard"], f"{res}.ulimits[{i}].hard")})

    left_out: list[str] = []
    if "deviceRequests" in inputs:
        if "gpus" in inputs:
            raise RehearsalError(f"{res}: gpus and deviceRequests conflict (set one)")
        left_out += _device_requests(res, inputs["deviceRequests"])
    if "gpus" in inputs:
        gpus = inputs["gpus"]
        if not isinstance(gpus, str) or not (gpus == "all" or re.fullmatch(r"(device=)?[\w,.:-]+", gpus)):
            raise RehearsalError(f"{res}: gpus must be 'all' or 'device=0,1', got {gpus!r}")
        left_out.append(f"gpus={gpus} (left out: no GPU here)")

    body["HostConfig"] = host
    uploads = [_upload(res, i, u) for i, u in enumerate(_list_of_dicts(res, "uploads", inputs.get("uploads", [])))]
    wait_timeout = inputs.get("waitTimeout", 60)
    if isinstance(wait_timeout, bool) or not isinstance(wait_timeout, (int, float)) or wait_timeout <= 0:
        raise RehearsalError(f"{res}: waitTimeout must be a positive number of seconds, got {wait_timeout!r}")
    return ContainerSpec(
        resource=res, name=name, body=body, extra_networks=extra_networks, uploads=uploads,
        start=bool(inputs.get("start", True)), wait=bool(inputs.get("wait", False)),
        wait_timeout=float(wait_timeout), must_run=bool(inputs.get("mustRun", True)),
        stop_timeout=as_int(inputs["destroyGraceSeconds"], f"{res}.destroyGraceSeconds")
        if "destroyGraceSeconds" in inputs else None,
        remove_volumes=bool(inputs.get("removeVolumes", True)),
        left_out=left_out, rehearsal_additions=additions,
    )


# ---------------------------------------------------------------------------------------------
# A plan: every record mapped before anything is created


@dataclasses.dataclass
class Step:
    kind: str            # "network" | "volume" | "image" | "container" | "command"
    record: Mapping[str, Any]
    spec: Any            # request body / ContainerSpec / CommandSpec / tag


def plan(records: Sequence[Mapping[str, Any]], *, images: Mapping[str, str], binds: Sequence[str] = (),
         env_overrides: Optional[Mapping[str, Mapping[str, Optional[str]]]] = None,
         run_label: str = DEFAULT_RUN_LABEL,
         ignore_types: Iterable[str] = DEFAULT_IGNORED_TYPE_PREFIXES) -> list[Step]:
    """All records mapped (so any unhandled input fails before anything is created), in creation order:
    networks, volumes, images, then containers and local commands in record order (the order in which
    the program registered them respects its dependencies).

    env_overrides: docker container name -> {KEY: value or None} (on every host); unknown container names fail.
    ignore_types: type prefixes skipped (component types of the program, providers, random).
    """
    ignore = tuple(ignore_types)
    env_overrides = dict(env_overrides or {})
    seen: dict[tuple[str, str, str], str] = {}
    first: list[Step] = []
    rest: list[Step] = []
    overridden: set[str] = set()
    order = {"network": 0, "volume": 1, "image": 2}
    for rec in records:
        typ = rec.get("type", "")
        if typ == NETWORK:
            step = Step("network", rec, network_body(rec, run_label=run_label))
            key = ("network", step.spec["Name"])
        elif typ == VOLUME:
            step = Step("volume", rec, volume_body(rec, run_label=run_label))
            key = ("volume", step.spec["Name"])
        elif typ == REMOTE_IMAGE:
            step = Step("image", rec, image_spec(rec))
            key = ("image", rec["name"])
        elif typ == CONTAINER:
            name = _name(rec, _inputs(rec))
            step = Step("container", rec, container_spec(rec, images=images, binds=binds,
                                                          env_overrides=env_overrides.get(name),
                                                          run_label=run_label))
            overridden.add(name)
            key = ("container", step.spec.name)
        elif typ == LOCAL_COMMAND:
            step = Step("command", rec, command_spec(rec))
            key = ("command", rec["name"])
        elif typ.startswith(ignore) and ignore:
            continue
        else:
            raise RehearsalError(f"{rec.get('name')}: resource type {typ!r} is not handled by the rehearsal "
                                 f"(add it to ignore_types if it creates nothing on the Docker host)")
        key = (*key, provider_of(rec))  # the same Docker name may exist once per host
        if key in seen:
            where = f" on {key[2]}" if key[2] else ""
            raise RehearsalError(f"{key[0]} {key[1]!r} registered twice{where} ({seen[key]} and {rec['name']})")
        seen[key] = rec["name"]
        (first if step.kind in order else rest).append(step)
    if set(env_overrides) - overridden:
        raise RehearsalError(f"env_overrides for containers the program does not create: {sorted(set(env_overrides) - overridden)}")
    first.sort(key=lambda s: order[s.kind])
    return first + rest


# ---------------------------------------------------------------------------------------------
# Engine client: raw HTTP over the unix socket


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class EngineError(RehearsalError):
    def __init__(self, method: str, path: str, status: int, message: str):
        self.status = status
        super().__init__(f"Docker Engine API {method} {path} -> {status}: {message}")


def default_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        raise RehearsalError(f"the rehearsal uses a local engine over a unix socket; DOCKER_HOST={host!r}")
    return host[len("unix://"):]


class Engine:
    """A minimal Docker Engine API client (no version prefix: the daemon's own API version)."""

    def __init__(self, socket_path: Optional[str] = None, timeout: float = 120.0):
        self.socket_path = socket_path or default_socket()
        self.timeout = timeout

    def request(self, method: str, path: str, *, params: Optional[Mapping[str, Any]] = None,
                body: Any = None, raw: Optional[bytes] = None, content_type: str = "application/json",
                timeout: Optional[float] = None, ok: Sequence[int] = (200, 201, 204, 304)) -> bytes:
        query = ("?" + urllib.parse.urlencode(params, doseq=True)) if params else ""
        conn = _UnixConnection(self.socket_path, timeout or self.timeout)
        try:
            headers = {}
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
            if data is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path + query, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except OSError as e:
            raise RehearsalError(f"Docker engine at {self.socket_path} unreachable: {e}") from e
        finally:
            conn.close()
        if resp.status not in ok:
            try:
                message = json.loads(payload).get("message", payload.decode(errors="replace"))
            except ValueError:
                message = payload.decode(errors="replace")
            raise EngineError(method, path, resp.status, message)
        return payload

    def json(self, method: str, path: str, **kw: Any) -> Any:
        payload = self.request(method, path, **kw)
        return json.loads(payload) if payload.strip() else None

    def ping(self) -> bool:
        try:
            return self.request("GET", "/_ping", timeout=5) == b"OK"
        except RehearsalError:
            return False

    def version(self) -> dict:
        return self.json("GET", "/version")

    def api_version(self) -> tuple[int, int]:
        major, minor = self.version()["ApiVersion"].split(".")[:2]
        return int(major), int(minor)

    # streamed JSON messages (build, import): fail on an error message
    def stream(self, method: str, path: str, **kw: Any) -> list[dict]:
        payload = self.request(method, path, **kw)
        messages = []
        decoder = json.JSONDecoder()
        text = payload.decode(errors="replace")
        pos = 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            msg, pos = decoder.raw_decode(text, pos)
            messages.append(msg)
            if "error" in msg:
                raise RehearsalError(f"{method} {path}: {msg['error']}\n"
                                     + "".join(m.get("stream", "") for m in messages[-20:]))
        return messages

    # containers
    def inspect_container(self, name: str) -> Optional[dict]:
        try:
            return self.json("GET", f"/containers/{urllib.parse.quote(name)}/json")
        except EngineError as e:
            if e.status == 404:
                return None
            raise

    def logs(self, name: str, tail: int = 200) -> str:
        payload = self.request("GET", f"/containers/{urllib.parse.quote(name)}/logs",
                               params={"stdout": 1, "stderr": 1, "tail": tail})
        return demux_logs(payload)

    def exec(self, name: str, cmd: Sequence[str], *, env: Sequence[str] = (), user: str = "",
             timeout: float = 120) -> tuple[int, str]:
        """Run `cmd` in a running container: (exit code, stdout+stderr)."""
        created = self.json("POST", f"/containers/{urllib.parse.quote(name)}/exec",
                            body={"Cmd": list(cmd), "Env": list(env), "User": user,
                                  "AttachStdout": True, "AttachStderr": True})
        payload = self.request("POST", f"/exec/{created['Id']}/start", body={"Detach": False, "Tty": False},
                               timeout=timeout)
        code = self.json("GET", f"/exec/{created['Id']}/json")["ExitCode"]
        return code, demux_logs(payload)

    def list_containers(self, label: str) -> list[dict]:
        return self.json("GET", "/containers/json",
                         params={"all": 1, "filters": json.dumps({"label": [label]})})

    def remove_container(self, name: str, *, stop_timeout: Optional[int] = None, volumes: bool = True) -> bool:
        try:
            if stop_timeout is not None:
                self.request("POST", f"/containers/{urllib.parse.quote(name)}/stop",
                             params={"t": stop_timeout}, timeout=stop_timeout + 60)
            self.request("DELETE", f"/containers/{urllib.parse.quote(name)}",
                         params={"force": 1, "v": int(volumes)}, timeout=120)
            return True
        except EngineError as e:
            if e.status == 404:
                return False
            raise

    # networks / volumes / images
    def list_networks(self, label: str) -> list[dict]:
        return self.json("GET", "/networks", params={"filters": json.dumps({"label": [label]})})

    def inspect_network(self, name: str) -> Optional[dict]:
        try:
            return self.json("GET", f"/networks/{urllib.parse.quote(name)}")
        except EngineError as e:
            if e.status == 404:
                return None
            raise

    def list_volumes(self, label: str) -> list[dict]:
        return self.json("GET", "/volumes", params={"filters": json.dumps({"label": [label]})})["Volumes"] or []

    def inspect_volume(self, name: str) -> Optional[dict]:
        try:
            return self.json("GET", f"/volumes/{urllib.parse.quote(name)}")
        except EngineError as e:
            if e.status == 404:
                return None
            raise

    def inspect_image(self, name: str) -> Optional[dict]:
        try:
            return self.json("GET", f"/images/{name}/json")
        except EngineError as e:
            if e.status == 404:
                return None
            raise


def demux_logs(payload: bytes) -> str:
    """Text of a non-TTY log stream (8-byte frame headers); plain text passes through."""
    out, pos = [], 0
    while pos + 8 <= len(payload) and payload[pos] in (0, 1, 2) and payload[pos + 1:pos + 4] == b"\0\0\0":
        size = int.from_bytes(payload[pos + 4:pos + 8], "big")
        out.append(payload[pos + 8:pos + 8 + size])
        pos += 8 + size
    if pos < len(payload):
        out.append(payload[pos:])
    return b"".join(out).decode(errors="replace")


_DOCKERD_SH = Path(__file__).with_name("dockerd.sh")


def ensure_engine(engine: Optional[Engine] = None, *, start: bool = True, timeout: float = 90) -> Engine:
    """An engine that answers; runs tests/rehearsal/dockerd.sh to start one when none does (`dockerd.sh b`
    for engine B's socket)."""
    engine = engine or Engine()
    if engine.ping():
        return engine
    if not start:
        raise RehearsalError(f"no Docker engine answers at {engine.socket_path}")
    which = ["b"] if engine.socket_path == ENGINE_B_SOCKET else []
    proc = subprocess.run(["bash", str(_DOCKERD_SH), *which], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not engine.ping():
        raise RehearsalError(f"could not start the Docker engine (dockerd.sh exited {proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return engine


# ---------------------------------------------------------------------------------------------
# up / destroy / cleanup


@dataclasses.dataclass
class Deployment:
    run_label: str
    created: list[str] = dataclasses.field(default_factory=list)          # resource names, in order
    timings: dict[str, float] = dataclasses.field(default_factory=dict)   # resource name -> seconds
    notes: list[str] = dataclasses.field(default_factory=list)
    started: dict[str, float] = dataclasses.field(default_factory=dict)   # container -> time.monotonic() at create
    finished: dict[str, float] = dataclasses.field(default_factory=dict)  # resource name -> time.monotonic() when done


def _failure_details(engine: Engine, name: str) -> str:
    info = engine.inspect_container(name) or {}
    state = info.get("State", {})
    health = state.get("Health") or {}
    lines = [f"state: {state.get('Status')} (exit code {state.get('ExitCode')}, restarts {info.get('RestartCount')},"
             f" error {state.get('Error')!r}), health: {health.get('Status')}"]
    for entry in (health.get("Log") or [])[-3:]:
        lines.append(f"health check exit {entry.get('ExitCode')}: {entry.get('Output', '').strip()[-1500:]}")
    try:
        lines.append("--- logs (last 200 lines)\n" + engine.logs(name, tail=200))
    except RehearsalError as e:
        lines.append(f"(no logs: {e})")
    return "\n".join(lines)


class Aborted(RehearsalError):
    """Stopped waiting because another resource of the same `up` failed."""


def wait_healthy(engine: Engine, spec: ContainerSpec, *, poll: float = 0.25,
                 stop: Optional[threading.Event] = None) -> float:
    """Seconds until the container is `healthy`; fails after `wait_timeout`, as soon as it exits or
    restarts (stricter than pulumi-docker, which waits out `waitTimeout` while the restart policy
    restarts a crashing container: a rehearsal wants the first crash's logs, at once), or when
    `stop` is set."""
    t0 = time.monotonic()
    deadline = t0 + spec.wait_timeout
    while True:
        if stop is not None and stop.is_set():
            raise Aborted(f"{spec.resource}: stopped waiting for {spec.name}: another resource failed")
        info = engine.inspect_container(spec.name)
        if info is None:
            raise RehearsalError(f"{spec.resource}: container {spec.name} disappeared while waiting for health")
        state = info["State"]
        health = state.get("Health")
        if health is None:
            raise RehearsalError(f"{spec.resource}: wait=true but container {spec.name} has no healthcheck")
        if health.get("Status") == "healthy":
            return time.monotonic() - t0
        if state.get("Status") in ("exited", "dead", "restarting") or info.get("RestartCount"):
            raise RehearsalError(f"{spec.resource}: container {spec.name} exited before it was healthy\n"
                                 + _failure_details(engine, spec.name))
        if time.monotonic() > deadline:
            raise RehearsalError(f"{spec.resource}: container {spec.name} not healthy after {spec.wait_timeout:g}s "
                                 f"(waitTimeout)\n" + _failure_details(engine, spec.name))
        time.sleep(poll)


def create_container(engine: Engine, spec: ContainerSpec, *, log: Callable[[str], None] = print,
                     stop: Optional[threading.Event] = None) -> float:
    """Create, upload, connect, start and (if `wait`) wait healthy; returns seconds until ready."""
    t0 = time.monotonic()
    hc = spec.body.get("Healthcheck") or {}
    if "StartInterval" in hc and engine.api_version() < (1, 44):
        raise RehearsalError(f"{spec.resource}: healthcheck.startInterval needs Docker API >= 1.44; "
                             f"this engine has {engine.version()['ApiVersion']}")
    engine.json("POST", "/containers/create", params={"name": spec.name}, body=spec.body)
    for network, endpoint in spec.extra_networks:
        engine.request("POST", f"/networks/{urllib.parse.quote(network)}/connect",
                       body={"Container": spec.name, "EndpointConfig": endpoint})
    for upload in spec.uploads:
        directory, archive = upload.archive()
        try:
            engine.request("PUT", f"/containers/{urllib.parse.quote(spec.name)}/archive",
                           params={"path": directory}, raw=archive, content_type="application/x-tar")
        except EngineError as e:
            raise RehearsalError(f"{spec.resource}: upload of {upload.path} failed: {e}") from e
    for note in spec.left_out:
        log(f"[rehearsal] {spec.resource}: {note}")
    if not spec.start:
        return time.monotonic() - t0
    engine.request("POST", f"/containers/{urllib.parse.quote(spec.name)}/start")
    if spec.wait:
        wait_healthy(engine, spec, stop=stop)
    if spec.must_run:
        state = (engine.inspect_container(spec.name) or {}).get("State", {})
        if not state.get("Running"):
            raise RehearsalError(f"{spec.resource}: container {spec.name} is not running (mustRun)\n"
                                 + _failure_details(engine, spec.name))
    return time.monotonic() - t0


def _create_step(engine: Engine, step: Step, dep: Deployment, *, run_commands: bool,
                 wait_cap: Optional[float], stop: Optional[threading.Event], lock: threading.Lock,
                 log: Callable[[str], None]) -> None:
    """Create one planned resource; records it in `dep` once done."""
    res = step.record["name"]
    t0 = time.monotonic()
    if step.kind == "network":
        engine.json("POST", "/networks/create", body=step.spec)
    elif step.kind == "volume":
        existing = engine.inspect_volume(step.spec["Name"])
        if existing is not None:
            # Docker's volume create returns an existing volume unchanged (old labels
            # included), as on a real host. One left by an earlier rehearsal (retained) is
            # reused like that; anyone else's (a real deploy's data) is never touched.
            if not _labelled(existing, None):
                raise RehearsalError(f"{res}: volume {step.spec['Name']} already exists on this engine and "
                                     f"is not a rehearsal volume: refusing to use it")
            with lock:
                dep.notes.append(f"volume {step.spec['Name']} already existed (retained by an earlier rehearsal)")
        engine.json("POST", "/volumes/create", body=step.spec)
    elif step.kind == "image":
        if engine.inspect_image(step.spec) is None:
            raise RehearsalError(f"{res}: image {step.spec!r} is not on the engine: build the stand-ins "
                                 f"first (standin_images.build_standin_images)")
    elif step.kind == "container":
        spec = step.spec
        if wait_cap is not None and spec.wait and spec.wait_timeout > wait_cap:
            spec = dataclasses.replace(spec, wait_timeout=wait_cap)
        log(f"[rehearsal] creating container {spec.name}")
        dep.started[res] = t0
        seconds = create_container(engine, spec, log=log, stop=stop)
        log(f"[rehearsal] {spec.name} ready in {seconds:.1f}s")
    elif step.kind == "command":
        if not run_commands:
            return
        run_command(step.spec, "create", log=log)
    with lock:
        dep.created.append(res)
        dep.timings[res] = time.monotonic() - t0
        dep.finished[res] = time.monotonic()


def _dependencies(records: Sequence[Mapping[str, Any]], steps: Sequence[Step]) -> dict[str, set[str]]:
    """Step name -> the names of the steps it waits for (its record's `dependsOn` among `steps`).

    A name that is a record but not a step (an ignored type, or left out by `only`) counts as
    done; a name that is no record at all fails."""
    known = {r["name"] for r in records}
    planned = {s.record["name"] for s in steps}
    deps: dict[str, set[str]] = {}
    for step in steps:
        res = step.record["name"]
        wanted = step.record.get("dependsOn") or []
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise RehearsalError(f"{res}: dependsOn names resources that are not recorded: {unknown}")
        deps[res] = set(wanted) & planned
    return deps


def up(records: Sequence[Mapping[str, Any]], *, images: Mapping[str, str], binds: Sequence[str] = (),
       env_overrides: Optional[Mapping[str, Mapping[str, Optional[str]]]] = None,
       run_label: str = DEFAULT_RUN_LABEL, engine: Optional[Engine] = None,
       ignore_types: Iterable[str] = DEFAULT_IGNORED_TYPE_PREFIXES, run_commands: bool = True,
       log: Callable[[str], None] = print, concurrency: int = 1, only: Optional[Collection[str]] = None,
       wait_cap: Optional[float] = None, engines: Optional[Mapping[str, Engine]] = None) -> Deployment:
    """Create every recorded resource on the engine, like `pulumi up` would.

    concurrency=1: one after the other, in `plan` order. concurrency>1: like `pulumi up`, each
    resource as soon as the resources in its record's `dependsOn` are created (a container is
    created once it is healthy, when `wait`), up to `concurrency` at a time.
    only: create just these resource names (the others exist already: a second `up`).
    wait_cap: wait at most this many seconds for a container to be healthy, whatever its
    `waitTimeout` (a rehearsal addition: readable failures instead of an hour-long wait).
    engines: Docker provider name -> engine; each record is created on its provider's (see engine_for).

    Raises `RehearsalError` (with `.deployment` set: what was created so far) on the first failure;
    call `destroy(records, ...)` either way.
    """
    engine = engine or Engine()
    steps = plan(records, images=images, binds=binds, env_overrides=env_overrides, run_label=run_label,
                 ignore_types=ignore_types)
    if only is not None:
        unknown = sorted(set(only) - {s.record["name"] for s in steps})
        if unknown:
            raise RehearsalError(f"only: no such resources in the plan: {unknown}")
        steps = [s for s in steps if s.record["name"] in only]
    dep = Deployment(run_label)
    lock = threading.Lock()
    stop = threading.Event()

    for step in steps:  # every record has its engine before anything is created
        engine_for(step.record, engine, engines)

    def create(step: Step) -> None:
        _create_step(engine_for(step.record, engine, engines), step, dep, run_commands=run_commands,
                     wait_cap=wait_cap, stop=stop, lock=lock, log=log)

    try:
        if concurrency <= 1:
            for step in steps:
                create(step)
        else:
            _run_dag(steps, _dependencies(records, steps), create, concurrency, stop)
    except RehearsalError as e:
        e.deployment = dep  # type: ignore[attr-defined]
        raise
    except Exception as e:
        err = RehearsalError(f"rehearsal up failed: {e!r}")
        err.deployment = dep  # type: ignore[attr-defined]
        raise err from e
    return dep


def _run_dag(steps: Sequence[Step], deps: Mapping[str, set[str]], create: Callable[[Step], None],
             concurrency: int, stop: threading.Event) -> None:
    """Run `create` on every step once its dependencies are done; on the first failure start nothing
    more, tell the running ones to stop waiting, and raise that failure (the others' too, if real)."""
    pending = {s.record["name"]: s for s in steps}
    running: dict[Future, str] = {}
    done: set[str] = set()
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rehearsal-up") as pool:
        while pending or running:
            if not errors:
                for name in [n for n in pending if deps[n] <= done]:
                    running[pool.submit(create, pending.pop(name))] = name
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                error = future.exception()
                if error is None:
                    done.add(name)
                elif not isinstance(error, Aborted):
                    errors.append(error)
                    stop.set()
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise RehearsalError(f"{len(errors)} resources failed:\n\n" + "\n\n".join(str(e) for e in errors)) from errors[0]
    if pending:
        raise RehearsalError(f"dependency cycle or unmet dependencies: {sorted(pending)} wait for "
                             f"{sorted(set().union(*(deps[n] for n in pending)) - done)}")


@dataclasses.dataclass
class DestroyReport:
    removed: list[str] = dataclasses.field(default_factory=list)
    retained: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


def _labelled(obj: Optional[Mapping[str, Any]], run_label: Optional[str]) -> bool:
    labels = (obj or {}).get("Labels") or (obj or {}).get("Config", {}).get("Labels") or {}
    return REHEARSAL_LABEL in labels and (run_label is None or labels[REHEARSAL_LABEL] == run_label)


def destroy(records: Sequence[Mapping[str, Any]], *, engine: Optional[Engine] = None,
            run_label: str = DEFAULT_RUN_LABEL, deployment: Optional[Deployment] = None,
            run_commands: bool = True, ignore_types: Iterable[str] = DEFAULT_IGNORED_TYPE_PREFIXES,
            log: Callable[[str], None] = print, engines: Optional[Mapping[str, Engine]] = None) -> DestroyReport:
    """Delete what `up` created, like `pulumi destroy`: local commands' `delete` (reverse order), then
    containers (reverse order), networks and volumes - except resources with retainOnDelete, which stay.
    Only objects carrying this run's label are touched. Stand-in images stay. Never raises for
    objects already gone; raises at the end if anything could not be removed.
    engines: Docker provider name -> engine; each record is deleted on its provider's (see engine_for).
    """
    engine = engine or Engine()
    report = DestroyReport()
    ignore = tuple(ignore_types)
    recs = [r for r in records if not (ignore and r.get("type", "").startswith(ignore))]
    created = set(deployment.created) if deployment else None

    def retained(rec: Mapping[str, Any], what: str) -> bool:
        if rec.get("retainOnDelete"):
            report.retained.append(what)
            return True
        return False

    for rec in reversed(recs):
        if rec.get("type") == LOCAL_COMMAND and run_commands and (created is None or rec["name"] in created):
            if retained(rec, f"command {rec['name']}"):
                continue
            try:
                run_command(command_spec(rec), "delete", log=log)
                report.removed.append(f"command {rec['name']}")
            except RehearsalError as e:
                report.errors.append(str(e))
    for rec in reversed(recs):
        if rec.get("type") != CONTAINER:
            continue
        inputs = _inputs(rec)
        name = _name(rec, inputs)
        if retained(rec, f"container {name}"):
            continue
        on = engine_for(rec, engine, engines)
        info = on.inspect_container(name)
        if info is None:
            continue
        if not _labelled(info, run_label):
            report.errors.append(f"container {name} exists but is not this rehearsal's: left alone")
            continue
        grace = inputs.get("destroyGraceSeconds")
        try:
            on.remove_container(name, stop_timeout=as_int(grace, name) if grace is not None else 10,
                                volumes=bool(inputs.get("removeVolumes", True)))
            report.removed.append(f"container {name}")
        except RehearsalError as e:
            report.errors.append(str(e))
    for typ, path in ((NETWORK, "/networks/"), (VOLUME, "/volumes/")):
        kind = path.strip("/")[:-1]
        for rec in reversed(recs):
            if rec.get("type") != typ:
                continue
            name = _name(rec, _inputs(rec))
            if retained(rec, f"{kind} {name}"):
                continue
            on = engine_for(rec, engine, engines)
            obj = (on.inspect_network if typ == NETWORK else on.inspect_volume)(name)
            if obj is None:
                continue
            if not _labelled(obj, run_label):
                report.errors.append(f"{kind} {name} exists but is not this rehearsal's: left alone")
                continue
            try:
                on.request("DELETE", path + urllib.parse.quote(name))
                report.removed.append(f"{kind} {name}")
            except RehearsalError as e:
                report.errors.append(str(e))
    for line in report.removed:
        log(f"[rehearsal] removed {line}")
    for line in report.retained:
        log(f"[rehearsal] retained {line} (retainOnDelete)")
    if report.errors:
        raise RehearsalError("destroy left things behind:\n" + "\n".join(report.errors))
    return report


def leftover_volumes(engine: Optional[Engine] = None, run_label: Optional[str] = None,
                     engines: Optional[Mapping[str, Engine]] = None) -> list[dict]:
    """Volumes with the rehearsal label (of one run, or of any run) on `engine` and every engine of
    `engines`: [{name, labels, engine (its socket)}]."""
    engine = engine or Engine()
    label = REHEARSAL_LABEL if run_label is None else f"{REHEARSAL_LABEL}={run_label}"
    return [{"name": v["Name"], "labels": v.get("Labels") or {}, "engine": e.socket_path}
            for e in distinct_engines(engine, engines) for v in e.list_volumes(label)]


def cleanup(engine: Optional[Engine] = None, *, run_label: Optional[str] = None, volumes: bool = True,
            log: Callable[[str], None] = print, engines: Optional[Mapping[str, Engine]] = None) -> list[str]:
    """Remove every container and network (and volume, unless volumes=False) carrying the rehearsal
    label - of one run, or of any run (leftovers of an earlier failed rehearsal) - on `engine` and every
    engine of `engines`. Returns what went."""
    engine = engine or Engine()
    gone: list[str] = []
    for e in distinct_engines(engine, engines):
        gone += _cleanup_one(e, run_label=run_label, volumes=volumes)
    for line in gone:
        log(f"[rehearsal] cleanup: removed {line}")
    return gone


def _cleanup_one(engine: Engine, *, run_label: Optional[str], volumes: bool) -> list[str]:
    label = REHEARSAL_LABEL if run_label is None else f"{REHEARSAL_LABEL}={run_label}"
    gone = []
    for c in engine.list_containers(label):
        engine.remove_container(c["Id"], volumes=True)
        gone.append(f"container {c['Names'][0].lstrip('/') if c.get('Names') else c['Id'][:12]}")
    for n in engine.list_networks(label):
        engine.request("DELETE", f"/networks/{n['Id']}")
        gone.append(f"network {n['Name']}")
    if volumes:
        for v in engine.list_volumes(label):
            engine.request("DELETE", f"/volumes/{urllib.parse.quote(v['Name'])}")
            gone.append(f"volume {v['Name']}")
    return gone
