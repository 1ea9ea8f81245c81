"""Pulumi mocks that also answer pulumi-tls resources: deterministic stand-in PEMs named after each resource.

`run_library(body)` runs a body that builds library components (not the stack program) under these mocks,
with the recorder of config/plan.py. The PEMs are markers, not keys: tests look for them in plaintext.
"""

from collections.abc import Callable
from typing import Optional

import pytest

from config import plan as plan_module
from config.plan import Plan, run_under_mocks

TLS = "tls:index/"


def mock_pem(kind: str, name: str) -> str:
    """A PEM-shaped marker, unique per resource: `-----BEGIN <kind>-----` around `mock <name>`."""
    return f"-----BEGIN {kind}-----\nmock {name}\n-----END {kind}-----\n"


def tls_outputs(type_: str, name: str) -> dict[str, str]:
    """The outputs pulumi-tls would return for this resource (camelCase, as the engine sends them)."""
    if type_ == f"{TLS}privateKey:PrivateKey":
        return {"privateKeyPem": mock_pem("EC PRIVATE KEY", name), "publicKeyPem": mock_pem("PUBLIC KEY", name)}
    if type_ == f"{TLS}certRequest:CertRequest":
        return {"certRequestPem": mock_pem("CERTIFICATE REQUEST", name)}
    if type_ in (f"{TLS}selfSignedCert:SelfSignedCert", f"{TLS}locallySignedCert:LocallySignedCert"):
        return {"certPem": mock_pem("CERTIFICATE", name)}
    return {}


class TlsMocks(plan_module._Mocks):
    """config/plan.py's mocks, plus pulumi-tls outputs."""

    def new_resource(self, args):  # type: ignore[no-untyped-def]
        resource_id, outputs = super().new_resource(args)
        return resource_id, {**outputs, **tls_outputs(args.typ, args.name)}


def run_library(body: Callable[[], None], monkeypatch: pytest.MonkeyPatch, stack: str = "dev") -> Plan:
    """Runs `body` as a Pulumi program under the TLS-aware mocks; returns what it registered and exported."""
    monkeypatch.setattr(plan_module, "_Mocks", TlsMocks)
    return run_under_mocks(body, {}, [], stack=stack)


def private_key_markers(plan: Plan) -> list[str]:
    """The mock private keys of every tls.PrivateKey in the plan."""
    return [tls_outputs(r.type, r.name)["privateKeyPem"] for r in plan.of_type(f"{TLS}privateKey:PrivateKey")]


def plaintext_holding(plan: Plan, secrets: list[str], exported: Optional[dict] = None) -> list[str]:
    """Where any of these secrets appears outside a Pulumi secret: `<resource> <input path>`, or `export <name>`."""
    from config.plan import is_secret

    found: list[str] = []

    def walk(value, where: str) -> None:  # type: ignore[no-untyped-def]
        if is_secret(value):
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")
        elif isinstance(value, str) and any(s in value for s in secrets):
            found.append(where)

    for r in plan.resources:
        walk(r.inputs, r.name)
    for name, value in (exported or plan.outputs).items():
        walk(value, f"export {name}")
    return found
