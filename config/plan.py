"""Runs the real program under Pulumi's mocks and records every resource it registers: a plan without the CLI or Docker."""

import asyncio
import hashlib
import json
import runpy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from .errors import NAMESPACE
from .secrets import SHOWN_AS, SecretValue
from .registry import structured_keys

PROGRAM = Path(__file__).resolve().parent.parent / "__main__.py"
PROJECT = "llmstack"
_SECRET_SIG = rpc._special_sig_key
_SECRET_VALUE_SIG = rpc._special_secret_sig


def is_secret(value: Any) -> bool:
    """True for a value Pulumi marked secret in recorded inputs."""
    return isinstance(value, dict) and value.get(_SECRET_SIG) == _SECRET_VALUE_SIG


def reveal(value: Any) -> Any:
    """The value with every secret marker removed (the plaintext a real deployment would get)."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def masked(value: Any) -> Any:
    """The value with every secret replaced by `[secret]`."""
    if is_secret(value):
        return SHOWN_AS
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def as_sent(struct: Any) -> dict[str, Any]:
    """A registered resource's inputs with every secret marker left where it was sent: a list of envs keeps
    its plain items plain and only its secret items secret."""
    return json_format.MessageToDict(struct)


def masked_envs(envs: Any) -> Any:
    """Docker's `["NAME=value", ...]` with each secret item shown as `NAME=[secret]`: the names are wiring, not secrets."""
    if not isinstance(envs, list):
        return masked(envs)
    shown = []
    for item in envs:
        plain = reveal(item)
        if is_secret(item) and isinstance(plain, str) and "=" in plain:
            shown.append(f"{plain.split('=', 1)[0]}={SHOWN_AS}")
        else:
            shown.append(masked(item))
    return shown


@dataclass
class RecordedResource:
    """One resource as the program registered it."""

    type: str
    name: str
    inputs: dict[str, Any]
    parent: str = ""
    provider: str = ""
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    depends_on: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    urn: str = ""
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    sent: dict[str, Any] = field(default_factory=dict)
    """The inputs with each secret marked where the program marked it (`inputs` marks a whole list or
    mapping secret when one item is, as Pulumi's deserializer does): what `config render` masks."""

    def revealed(self) -> dict[str, Any]:
        return reveal(self.inputs)


@dataclass
class Plan:
    """What one run of the program registered and exported."""

    resources: list[RecordedResource]
    outputs: dict[str, Any]

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> RecordedResource:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}")
        return found[0]

    def by_urn(self, urn: str) -> RecordedResource:
        return next(r for r in self.resources if r.urn == urn)


def deterministic_secret(name: str, length: int) -> str:
    """A stand-in for a generated password: the same for the same resource name, so renders are stable."""
    digest = hashlib.sha256(f"llmstack-render:{name}".encode()).hexdigest()
    return (digest * (length // len(digest) + 1))[:length]


TLS_TYPE_PREFIX = "tls:index/"


def mock_pem(kind: str, name: str) -> str:
    """A PEM-shaped marker, unique per resource: `-----BEGIN <kind>-----` around `mock <name>` (not a key)."""
    return f"-----BEGIN {kind}-----\nmock {name}\n-----END {kind}-----\n"


def tls_outputs(type_: str, name: str) -> dict[str, str]:
    """The outputs pulumi-tls would return for this resource (camelCase, as the engine sends them)."""
    if type_ == f"{TLS_TYPE_PREFIX}privateKey:PrivateKey":
        return {"privateKeyPem": mock_pem("EC PRIVATE KEY", name), "publicKeyPem": mock_pem("PUBLIC KEY", name)}
    if type_ == f"{TLS_TYPE_PREFIX}certRequest:CertRequest":
        return {"certRequestPem": mock_pem("CERTIFICATE REQUEST", name)}
    if type_ in (f"{TLS_TYPE_PREFIX}selfSignedCert:SelfSignedCert", f"{TLS_TYPE_PREFIX}locallySignedCert:LocallySignedCert"):
        return {"certPem": mock_pem("CERTIFICATE", name)}
    return {}


def mock_tls(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, str]:
    """The mocks' answer to a pulumi-tls resource: PEM-shaped markers (`tls_outputs`); the rehearsal passes real ones."""
    return tls_outputs(type_, name)


def mock_id(type_: str, name: str, inputs: dict[str, Any]) -> str:
    """The id the mocks give a resource: `<logical name>-id`, stable across runs."""
    return f"{name}-id"


class _Mocks(pulumi.runtime.Mocks):
    def __init__(
        self,
        password: Callable[[str, int], str],
        resource_id: Callable[[str, str, dict], str],
        tls: Callable[[str, str, dict], dict[str, str]] = mock_tls,
    ) -> None:
        self.password = password
        self.resource_id = resource_id
        self.tls = tls

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        outputs = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = self.password(args.name, int(args.inputs.get("length", 32)))
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            digest = hashlib.sha256(str(args.inputs.get("name")).encode()).hexdigest()
            outputs["imageId"] = f"sha256:{digest}"
            outputs["repoDigest"] = f"{args.inputs.get('name')}@sha256:{digest}"
        elif args.typ == "random:index/randomId:RandomId":
            # Like the provider: a new id when a keeper changes, the same one otherwise.
            keepers = json.dumps(reveal(args.inputs.get("keepers") or {}), sort_keys=True, default=str)
            digest = hashlib.sha256(f"{args.name}:{keepers}".encode()).hexdigest()
            outputs["hex"] = digest[: 2 * int(args.inputs.get("byteLength", 8))]
        elif args.typ == "command:local:Command":
            outputs.setdefault("stdout", "")
            outputs.setdefault("stderr", "")
        elif args.typ.startswith(TLS_TYPE_PREFIX):
            outputs.update(self.tls(args.typ, args.name, args.inputs))
        return self.resource_id(args.typ, args.name, args.inputs), outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, Optional[list]]:
        return {}, None


def _close_worker_thread_loop() -> None:
    """Closes the event loop Pulumi's mock monitor opened on this executor thread (each call opens one if none is set).

    Left open, those loops are collected at interpreter exit in no set order with their self-pipe
    sockets; when a socket goes first, the loop's __del__ prints "Exception ignored ... Invalid file
    descriptor" on stderr (about one run in twenty)."""
    if threading.current_thread() is threading.main_thread():
        return
    policy = asyncio.get_event_loop_policy()
    try:
        loop = policy.get_event_loop()
    except RuntimeError:
        return
    if not loop.is_running():
        loop.close()
        policy.set_event_loop(None)


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also keeping the resource options the plain mocks drop."""

    def __init__(self, mocks: _Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []

    def Invoke(self, request):  # noqa: N802 (gRPC method name)
        try:
            return super().Invoke(request)
        finally:
            _close_worker_thread_loop()

    def ReadResource(self, request):  # noqa: N802 (gRPC method name)
        try:
            return super().ReadResource(request)
        finally:
            _close_worker_thread_loop()

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        try:
            return self._record(request)
        finally:
            _close_worker_thread_loop()

    def _record(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            timeouts = request.customTimeouts
            self.recorded.append(
                RecordedResource(
                    type=request.type,
                    name=request.name,
                    inputs=rpc.deserialize_properties(request.object),
                    parent=request.parent,
                    provider=request.provider.rsplit("::", 1)[0].rsplit("::", 1)[-1] if request.provider else "",
                    retain_on_delete=bool(request.retainOnDelete),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    depends_on=sorted(request.dependencies),
                    replace_on_changes=list(request.replaceOnChanges),
                    ignore_changes=list(request.ignoreChanges),
                    custom_timeouts={k: v for k, v in (("create", timeouts.create), ("update", timeouts.update), ("delete", timeouts.delete)) if v},
                    urn=response.urn,
                    id=response.id,
                    outputs=rpc.deserialize_properties(response.object),
                    sent=as_sent(request.object),
                )
            )
        return response


def pulumi_config(raw: dict[str, Any], secrets: Optional[dict[str, str]] = None) -> tuple[dict[str, str], list[str]]:
    """Stack-file values as Pulumi passes them to a program (JSON for objects), and the secret keys.

    An encrypted value is replaced by `secrets[key]`, or by a placeholder that passes validation."""
    config: dict[str, str] = {}
    secret_keys: list[str] = []

    def plaintext_of(key: str, value: SecretValue) -> str:
        plaintext = (secrets or {}).get(key) or value.plaintext
        return "sk-" + deterministic_secret(f"config:{key}", 40) if plaintext is None else plaintext

    for key, value in raw.items():
        full = f"{NAMESPACE}:{key}"
        if isinstance(value, SecretValue):
            config[full] = plaintext_of(key, value)
            secret_keys.append(full)
        elif _holds_secret(value):
            # As Pulumi does: a structured value with a `secure:` leaf is decrypted, and the whole key is secret.
            config[full] = json.dumps(_decrypted(value, lambda leaf: plaintext_of(key, leaf)), default=str)
            secret_keys.append(full)
        elif key in structured_keys() or not isinstance(value, str):
            config[full] = json.dumps(value, default=str)
        else:
            config[full] = value
    return config, secret_keys


def _holds_secret(value: Any) -> bool:
    if isinstance(value, SecretValue):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def _decrypted(value: Any, plaintext: Callable[[SecretValue], str]) -> Any:
    if isinstance(value, SecretValue):
        return plaintext(value)
    if isinstance(value, dict):
        return {k: _decrypted(v, plaintext) for k, v in value.items()}
    if isinstance(value, list):
        return [_decrypted(v, plaintext) for v in value]
    return value


def run_under_mocks(
    body: Callable[[], None],
    config: dict[str, str],
    secret_keys: list[str],
    stack: str = "dev",
    password: Callable[[str, int], str] = deterministic_secret,
    resource_id: Callable[[str, str, dict], str] = mock_id,
    tls: Callable[[str, str, dict], dict[str, str]] = mock_tls,
) -> Plan:
    """Runs `body` as a Pulumi program under mocks; returns what it registered and exported.
    `tls(type, name, inputs)` answers the pulumi-tls resources (default: markers)."""
    mocks = _Mocks(password, resource_id, tls)
    monitor = _RecordingMonitor(mocks)
    pulumi_mocks.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys)
    exported: dict[str, Any] = {}

    def program_body() -> None:
        original = pulumi.export

        def capture(name: str, value: Any) -> None:
            exported[name] = value
            original(name, value)

        pulumi.export = capture
        try:
            body()
        finally:
            pulumi.export = original

    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    _sync_await(run_pulumi_func(program_body))
    outputs = {name: _sync_await(_resolve(value)) for name, value in exported.items()}
    return Plan(monitor.recorded, outputs)


def run_program(
    raw: dict[str, Any],
    stack: str = "dev",
    password: Callable[[str, int], str] = deterministic_secret,
    secrets: Optional[dict[str, str]] = None,
    program: Path = PROGRAM,
    resource_id: Callable[[str, str, dict], str] = mock_id,
    tls: Callable[[str, str, dict], dict[str, str]] = mock_tls,
) -> Plan:
    """Runs `__main__.py` under mocks with this raw config; returns what it registered and exported."""
    config, secret_keys = pulumi_config(raw, secrets)
    body = lambda: runpy.run_path(str(program), run_name="__main__")  # noqa: E731
    return run_under_mocks(body, config, secret_keys, stack, password, resource_id, tls)


async def _resolve(value: Any) -> Any:
    output = pulumi.Output.from_input(value)
    result = await output.future()
    secret = await output.is_secret()
    return {_SECRET_SIG: _SECRET_VALUE_SIG, "value": result} if secret else result
