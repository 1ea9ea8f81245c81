"""pulumi-tls's resources answered under the rehearsal's mocks as the provider creates them: real keys, a real
CA and real certificates (`cryptography`), so the relay and edge serve TLS that clients verify for real.

The provider (pulumi/pulumi-tls, terraform-provider-tls) builds them with Go's crypto/x509; what follows its
choices: keys in SEC1 PEM for ECDSA (`EC PRIVATE KEY`), basic constraints and key usage marked critical, the
subject key id from `setSubjectKeyId` (and always on a CA, as Go adds it), the authority key id from the CA's,
a LocallySignedCert taking its subject and names from the request. An input it does not handle fails.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config.plan import TLS_TYPE_PREFIX, reveal

from .docker_api import RehearsalError

PRIVATE_KEY = f"{TLS_TYPE_PREFIX}privateKey:PrivateKey"
SELF_SIGNED = f"{TLS_TYPE_PREFIX}selfSignedCert:SelfSignedCert"
CERT_REQUEST = f"{TLS_TYPE_PREFIX}certRequest:CertRequest"
LOCALLY_SIGNED = f"{TLS_TYPE_PREFIX}locallySignedCert:LocallySignedCert"

CURVES = {"P256": ec.SECP256R1(), "P384": ec.SECP384R1(), "P521": ec.SECP521R1()}
#: pulumi-tls `allowedUses` -> x509 KeyUsage flag, or extended key usage.
KEY_USAGES = {
    "digital_signature": "digital_signature", "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment", "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement", "cert_signing": "key_cert_sign", "crl_signing": "crl_sign",
}
EXTENDED_USAGES = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
}
SUBJECT_FIELDS = {"commonName": NameOID.COMMON_NAME, "organization": NameOID.ORGANIZATION_NAME}
# Inputs only the provider's bookkeeping reads (renewal is decided at `pulumi up`, not in the certificate).
IGNORED = {"earlyRenewalHours", "readyForRenewal"}


def _check(resource: str, inputs: Mapping[str, Any], handled: set[str]) -> None:
    unknown = sorted(set(k for k, v in inputs.items() if v is not None) - handled - IGNORED)
    if unknown:
        raise RehearsalError(f"{resource}: pulumi-tls inputs {unknown} are not handled by tests/rehearsal/tls_provider.py")


def _sec1(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def _key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise RehearsalError("only ECDSA keys are handled")
    return key


def _subject(resource: str, subject: Mapping[str, Any]) -> x509.Name:
    unknown = sorted(set(subject) - set(SUBJECT_FIELDS))
    if unknown:
        raise RehearsalError(f"{resource}: subject fields {unknown} are not handled")
    return x509.Name([x509.NameAttribute(SUBJECT_FIELDS[k], str(subject[k])) for k in SUBJECT_FIELDS if subject.get(k)])


def _usages(resource: str, uses: Sequence[str]) -> tuple[x509.KeyUsage, list[x509.ObjectIdentifier]]:
    unknown = sorted(set(uses) - set(KEY_USAGES) - set(EXTENDED_USAGES))
    if unknown:
        raise RehearsalError(f"{resource}: allowedUses {unknown} are not handled")
    flags = {f: False for f in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                                "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")}
    flags.update({KEY_USAGES[u]: True for u in uses if u in KEY_USAGES})
    return x509.KeyUsage(**flags), [EXTENDED_USAGES[u] for u in uses if u in EXTENDED_USAGES]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class TLSProvider:
    """`tls(type, name, inputs)` for config.plan.run_program: one key or certificate per resource name for
    the whole run (as the state keeps them), made on first use."""

    def __init__(self) -> None:
        self.outputs: dict[str, dict[str, str]] = {}

    def __call__(self, type_: str, name: str, inputs: dict[str, Any]) -> dict[str, str]:
        if name not in self.outputs:
            self.outputs[name] = self.create(type_, name, reveal(inputs))
        return self.outputs[name]

    def create(self, type_: str, name: str, inputs: dict[str, Any]) -> dict[str, str]:
        if type_ == PRIVATE_KEY:
            _check(name, inputs, {"algorithm", "ecdsaCurve"})
            if inputs.get("algorithm") != "ECDSA" or inputs.get("ecdsaCurve", "P224") not in CURVES:
                raise RehearsalError(f"{name}: only ECDSA keys on {sorted(CURVES)} are handled, got {inputs}")
            key = ec.generate_private_key(CURVES[inputs["ecdsaCurve"]])
            public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            return {"privateKeyPem": _sec1(key), "publicKeyPem": public.decode()}
        if type_ == SELF_SIGNED:
            _check(name, inputs, {"privateKeyPem", "subject", "isCaCertificate", "setSubjectKeyId",
                                  "validityPeriodHours", "allowedUses"})
            key = _key(inputs["privateKeyPem"])
            subject = _subject(name, inputs.get("subject") or {})
            return {"certPem": _pem(self._sign(name, inputs, subject, key.public_key(), subject, key, None, []))}
        if type_ == CERT_REQUEST:
            _check(name, inputs, {"privateKeyPem", "subject", "dnsNames", "ipAddresses"})
            key = _key(inputs["privateKeyPem"])
            names = [x509.DNSName(n) for n in inputs.get("dnsNames") or []]
            names += [x509.IPAddress(ipaddress.ip_address(a)) for a in inputs.get("ipAddresses") or []]
            builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(name, inputs.get("subject") or {}))
            if names:
                builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            csr = builder.sign(key, hashes.SHA256())
            return {"certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode()}
        if type_ == LOCALLY_SIGNED:
            _check(name, inputs, {"certRequestPem", "caCertPem", "caPrivateKeyPem", "isCaCertificate",
                                  "setSubjectKeyId", "validityPeriodHours", "allowedUses"})
            csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
            ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
            try:
                names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                names = []
            cert = self._sign(name, inputs, csr.subject, csr.public_key(), ca.subject, _key(inputs["caPrivateKeyPem"]), ca, names)
            return {"certPem": _pem(cert)}
        raise RehearsalError(f"{name}: pulumi-tls type {type_} is not handled by tests/rehearsal/tls_provider.py")

    @staticmethod
    def _sign(name: str, inputs: Mapping[str, Any], subject: x509.Name, public_key: Any, issuer: x509.Name,
              issuer_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate | None, names: list) -> x509.Certificate:
        hours = float(inputs.get("validityPeriodHours") or 0)
        if hours <= 0:
            raise RehearsalError(f"{name}: validityPeriodHours must be set")
        is_ca = bool(inputs.get("isCaCertificate"))
        usage, extended = _usages(name, inputs.get("allowedUses") or [])
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(hours=hours))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(usage, critical=True)
        )
        if extended:
            builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if inputs.get("setSubjectKeyId") or is_ca:
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        if ca is not None:
            ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())
