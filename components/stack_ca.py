"""StackCA: one private certificate authority per stack (pulumi-tls) that signs the edge's and every relay's certificate.

Keys are ECDSA P-256 (small, fast, accepted by Go, OpenSSL and browsers); every private key is a secret output.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_tls as tls

KEY_ALGORITHM = "ECDSA"
KEY_CURVE = "P256"
ORGANIZATION = "llmstack"
# Ten years: the CA is trusted by the gateway and clients; replacing it means handing out a new CA file.
CA_VALIDITY_HOURS = 10 * 365 * 24
CA_USES = ["cert_signing", "crl_signing", "digital_signature"]
# Two years per server certificate; any `pulumi up` in its last 30 days replaces it (LocallySignedCert's
# early renewal), so a stack updated at least monthly never serves an expired certificate.
SERVER_VALIDITY_HOURS = 2 * 365 * 24
SERVER_EARLY_RENEWAL_HOURS = 30 * 24
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]


class StackCAArgs(TypedDict):
    """Inputs of a StackCA."""

    common_name: NotRequired[str]
    """Subject common name of the CA certificate (default `llmstack CA`); name the stack in it."""


@dataclass(frozen=True)
class ServerCertificate:
    """A server certificate signed by the stack CA, with its key (secret) and the CA that signed it."""

    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    ca_cert_pem: pulumi.Output[str]


class StackCA(pulumi.ComponentResource):
    """A self-signed CA certificate and its key, kept in the stack's state; issues server certificates."""

    cert_pem: pulumi.Output[str]
    """The CA certificate (PEM): what the gateway and clients trust."""

    def __init__(self, name: str, args: StackCAArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("llmstack:index:StackCA", name, {}, opts)
        key = tls.PrivateKey(
            f"{name}-key",
            algorithm=KEY_ALGORITHM,
            ecdsa_curve=KEY_CURVE,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._private_key_pem = pulumi.Output.secret(key.private_key_pem)
        cert = tls.SelfSignedCert(
            f"{name}-cert",
            private_key_pem=self._private_key_pem,
            is_ca_certificate=True,
            set_subject_key_id=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=CA_USES,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=args.get("common_name") or f"{ORGANIZATION} CA", organization=ORGANIZATION
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.cert_pem = cert.cert_pem
        self.register_outputs({"cert_pem": self.cert_pem})

    def issue_server_certificate(
        self,
        name: str,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        parent: Optional[pulumi.Resource] = None,
    ) -> ServerCertificate:
        """A key and a certificate for a TLS server reached by these names and addresses.

        The resources are children of `parent` (the relay or edge that serves the certificate), so they go
        with it when it is removed; they are named `<name>-tls-key`, `<name>-tls-csr` and `<name>-tls-cert`.
        """
        names, addresses = list(dns_names), list(ip_addresses)
        if not names and not addresses:
            raise ValueError(f"server certificate {name!r}: give at least one DNS name or IP address")
        opts = pulumi.ResourceOptions(parent=parent or self)
        key = tls.PrivateKey(f"{name}-tls-key", algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE, opts=opts)
        private_key_pem = pulumi.Output.secret(key.private_key_pem)
        request = tls.CertRequest(
            f"{name}-tls-csr",
            private_key_pem=private_key_pem,
            dns_names=names or None,
            ip_addresses=addresses or None,
            subject=tls.CertRequestSubjectArgs(common_name=(names or addresses)[0], organization=ORGANIZATION),
            opts=opts,
        )
        cert = tls.LocallySignedCert(
            f"{name}-tls-cert",
            cert_request_pem=request.cert_request_pem,
            ca_cert_pem=self.cert_pem,
            ca_private_key_pem=self._private_key_pem,
            validity_period_hours=SERVER_VALIDITY_HOURS,
            early_renewal_hours=SERVER_EARLY_RENEWAL_HOURS,
            allowed_uses=SERVER_USES,
            set_subject_key_id=True,
            opts=opts,
        )
        return ServerCertificate(cert_pem=cert.cert_pem, private_key_pem=private_key_pem, ca_cert_pem=self.cert_pem)
