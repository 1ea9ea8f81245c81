"""StackCA under Pulumi's mocks: a self-signed CA, server certificates it signs, keys kept secret, inputs stable."""

import json

import pulumi
import pytest

from components import stack_ca
from config.plan import is_secret, reveal
from tests.tls_mocks import TLS, mock_pem, plaintext_holding, private_key_markers, run_library


def build(names=("relay.gpu-02.lan",), addresses=("10.0.0.2",)) -> None:
    ca = stack_ca.StackCA("stack-ca", {"common_name": "llmstack prod CA"})
    relay = pulumi.ComponentResource("test:index:Relay", "relay-gpu-02")
    cert = ca.issue_server_certificate("relay-gpu-02", dns_names=list(names), ip_addresses=list(addresses), parent=relay)
    pulumi.export("ca_cert_pem", ca.cert_pem)
    pulumi.export("cert_pem", cert.cert_pem)
    pulumi.export("private_key_pem", cert.private_key_pem)
    pulumi.export("issuer_pem", cert.ca_cert_pem)


@pytest.fixture
def plan(monkeypatch):
    return run_library(build, monkeypatch)


def test_ca_is_a_self_signed_ecdsa_ca_valid_ten_years(plan):
    key = plan.named("stack-ca-key")
    assert key.type == f"{TLS}privateKey:PrivateKey"
    assert key.inputs == {"algorithm": "ECDSA", "ecdsaCurve": "P256"}
    cert = plan.named("stack-ca-cert")
    assert cert.type == f"{TLS}selfSignedCert:SelfSignedCert"
    inputs = cert.revealed()
    assert inputs["isCaCertificate"] is True
    assert inputs["validityPeriodHours"] == 87600
    assert inputs["allowedUses"] == ["cert_signing", "crl_signing", "digital_signature"]
    assert inputs["subject"] == {"commonName": "llmstack prod CA", "organization": "llmstack"}
    assert inputs["privateKeyPem"] == mock_pem("EC PRIVATE KEY", "stack-ca-key")
    assert is_secret(cert.inputs["privateKeyPem"])


def test_server_certificate_is_signed_by_the_ca_for_the_given_names(plan):
    request = plan.named("relay-gpu-02-tls-csr").revealed()
    assert request["dnsNames"] == ["relay.gpu-02.lan"]
    assert request["ipAddresses"] == ["10.0.0.2"]
    assert request["subject"] == {"commonName": "relay.gpu-02.lan", "organization": "llmstack"}
    assert request["privateKeyPem"] == mock_pem("EC PRIVATE KEY", "relay-gpu-02-tls-key")
    signed = plan.named("relay-gpu-02-tls-cert")
    inputs = signed.revealed()
    assert inputs["caCertPem"] == mock_pem("CERTIFICATE", "stack-ca-cert")
    assert inputs["caPrivateKeyPem"] == mock_pem("EC PRIVATE KEY", "stack-ca-key")
    assert inputs["certRequestPem"] == mock_pem("CERTIFICATE REQUEST", "relay-gpu-02-tls-csr")
    assert inputs["allowedUses"] == ["digital_signature", "key_encipherment", "server_auth"]
    assert inputs["validityPeriodHours"] == 17520 and inputs["earlyRenewalHours"] == 720
    assert plan.outputs["cert_pem"] == mock_pem("CERTIFICATE", "relay-gpu-02-tls-cert")
    assert plan.outputs["issuer_pem"] == plan.outputs["ca_cert_pem"] == mock_pem("CERTIFICATE", "stack-ca-cert")


def test_server_certificate_resources_belong_to_the_server_that_uses_them(plan):
    relay = plan.named("relay-gpu-02")
    for name in ("relay-gpu-02-tls-key", "relay-gpu-02-tls-csr", "relay-gpu-02-tls-cert"):
        assert plan.named(name).parent == relay.urn
    assert plan.named("stack-ca-cert").parent == plan.named("stack-ca").urn


def test_private_keys_are_secret_everywhere(plan):
    keys = private_key_markers(plan)
    assert len(keys) == 2
    assert plaintext_holding(plan, keys) == []
    assert is_secret(plan.outputs["private_key_pem"])
    assert reveal(plan.outputs["private_key_pem"]) == mock_pem("EC PRIVATE KEY", "relay-gpu-02-tls-key")
    assert not is_secret(plan.outputs["ca_cert_pem"])


def test_inputs_are_the_same_on_every_run(monkeypatch):
    def snapshot():
        plan = run_library(build, monkeypatch)
        # Registration order is not fixed (resources register concurrently); what is registered is.
        return json.dumps(sorted((r.type, r.name, r.inputs) for r in plan.resources), sort_keys=True)

    assert snapshot() == snapshot()


def test_ip_only_certificate_takes_the_address_as_common_name(monkeypatch):
    plan = run_library(lambda: build(names=(), addresses=("10.0.0.7",)), monkeypatch)
    request = plan.named("relay-gpu-02-tls-csr").revealed()
    assert request["subject"]["commonName"] == "10.0.0.7"
    assert "dnsNames" not in request


def test_a_certificate_needs_a_name(monkeypatch):
    with pytest.raises(Exception, match="at least one DNS name or IP address"):
        run_library(lambda: build(names=(), addresses=()), monkeypatch)
