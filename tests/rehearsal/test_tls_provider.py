"""The rehearsal's pulumi-tls answers: the program's stack CA and edge certificate come out as a real chain that
OpenSSL's strict verification accepts for the edge's name, without an engine."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from config.plan import reveal

from . import rehearsal
from .docker_api import RehearsalError
from .tls_provider import PRIVATE_KEY, TLSProvider


def edge_plan(tls: TLSProvider):
    return rehearsal.record_plan(rehearsal.stack_config(8443), rehearsal.Passwords(), tls=tls)


@pytest.fixture(scope="module")
def plan_and_tls():
    tls = TLSProvider()
    return edge_plan(tls), tls


def uploads(plan, container: str) -> dict[str, str]:
    [rec] = [r for r in plan.resources if r.type.endswith("container:Container") and r.name == container]
    return {u["file"]: u["content"] for u in reveal(rec.inputs)["uploads"]}


def test_the_edge_certificate_chains_to_the_stack_ca_output(plan_and_tls, tmp_path: Path):
    plan, _ = plan_and_tls
    ca_pem = reveal(plan.outputs)["caCertificate"]
    files = uploads(plan, "edge")
    cert_pem, key_pem = files["/etc/caddy/tls/server.crt"], files["/etc/caddy/tls/server.key"]
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "server.pem").write_text(cert_pem)
    out = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname",
                          rehearsal.EDGE_DOMAIN, "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "server.pem")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # Python's own TLS stack (what the smoke check's httpx uses) loads the pair and trusts the CA
    (tmp_path / "server.key").write_text(key_pem)
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.subject.rfc4514_string() == "O=llmstack,CN=llmstack CA"


def test_keys_are_real_and_stable_for_the_run(plan_and_tls):
    plan, tls = plan_and_tls
    [key] = [r for r in plan.resources if r.type == PRIVATE_KEY and r.name == "edge-tls-key"]
    pem = tls(PRIVATE_KEY, "edge-tls-key", key.inputs)["privateKeyPem"]
    assert pem.startswith("-----BEGIN EC PRIVATE KEY-----")
    serialization.load_pem_private_key(pem.encode(), password=None)
    again = edge_plan(tls)  # the changed-model plan of the same run: the same keys and certificates
    assert uploads(again, "edge") == uploads(plan, "edge")
    assert reveal(again.outputs)["caCertificate"] == reveal(plan.outputs)["caCertificate"]


def test_an_input_it_does_not_know_fails():
    with pytest.raises(RehearsalError, match=r"\['rsaBits'\] are not handled"):
        TLSProvider()(PRIVATE_KEY, "k", {"algorithm": "ECDSA", "ecdsaCurve": "P256", "rsaBits": 4096})
    with pytest.raises(RehearsalError, match="only ECDSA"):
        TLSProvider()(PRIVATE_KEY, "k", {"algorithm": "RSA"})
