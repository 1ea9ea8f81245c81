"""Real certificates for the tests, in the shape components/stack_ca.py asks pulumi-tls for (same curve, uses, SANs).

pulumi-tls cannot run without the Pulumi engine here; the `cryptography` package makes the same objects:
an ECDSA P-256 CA with the CA uses, and server certificates it signs with the server uses, keys in SEC1 PEM
("EC PRIVATE KEY", as pulumi-tls writes `private_key_pem` for ECDSA).
"""

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components import caddy, stack_ca

CURVES = {"P256": ec.SECP256R1()}
KEY_USAGE_FLAGS = {
    "digital_signature": "digital_signature",
    "key_encipherment": "key_encipherment",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
}
EXTENDED_USAGES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH}
VALIDITY = datetime.timedelta(days=2)


def _key_usage(uses: Sequence[str]) -> x509.KeyUsage:
    flags = {
        flag: False
        for flag in (
            "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
            "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
        )
    }
    flags.update({KEY_USAGE_FLAGS[u]: True for u in uses if u in KEY_USAGE_FLAGS})
    return x509.KeyUsage(**flags)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, stack_ca.ORGANIZATION)]
    )


def _sec1(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode()


@dataclass(frozen=True)
class IssuingCA:
    """A CA like StackCA's: its certificate PEM and the objects that sign with it."""

    cert_pem: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def issue(self, dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = ()) -> tuple[str, str]:
        """(certificate PEM, SEC1 key PEM) for a server, as StackCA.issue_server_certificate requests it."""
        key = ec.generate_private_key(CURVES[stack_ca.KEY_CURVE])
        now = datetime.datetime.now(datetime.timezone.utc)
        names = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name([*dns_names, *ip_addresses][0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(_key_usage(stack_ca.SERVER_USES), critical=True)
            .add_extension(x509.ExtendedKeyUsage([EXTENDED_USAGES[u] for u in stack_ca.SERVER_USES if u in EXTENDED_USAGES]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode(), _sec1(key)


def make_ca(common_name: str = "llmstack test CA") -> IssuingCA:
    """A self-signed CA with StackCA's key type and uses."""
    key = ec.generate_private_key(CURVES[stack_ca.KEY_CURVE])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(stack_ca.CA_USES), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuingCA(cert.public_bytes(serialization.Encoding.PEM).decode(), key, cert)


def write_server_files(directory: Path, cert_pem: str, key_pem: str) -> tuple[Path, Path]:
    """The certificate and key written as a CaddyProxy uploads them (the files `caddy.tls_files` names)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / Path(caddy.CERT_FILE).name
    key_file = directory / Path(caddy.KEY_FILE).name
    cert_file.write_text(cert_pem)
    key_file.write_text(key_pem)
    key_file.chmod(0o600)
    return cert_file, key_file
