"""Sign a controller's signing-CA request under the site's root CA (ADR 0015).

In a raft cluster every controller signs what enrolls through it with its own CA under
the one root. A member makes that CA's key and a certificate request itself, with
`ziti pki`; only the request travels to the first controller host, where the root key
is, and only the certificate travels back: no member's key ever leaves its host.
`ziti pki` cannot sign a request, so this does, with the profile `ziti pki create
intermediate` gives the first host's own signing CA (same key usages, path length,
SPIFFE trust domain, hash).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from appliance.errors import ApplianceError

__all__ = ["CertificateRequestError", "MemberCA", "sign_member_ca"]

#: As `ziti pki create intermediate` (its default expiry), cut to the root's own end.
VALID_DAYS = 3650
#: Clocks of the site's hosts may differ, or be stepped back; a certificate valid from an
#: hour ago is usable on all of them at once (as the controller's own, `ziti pki`'s with
#: the role's --not-before, and the admin service's TLS certificate).
BACKDATE = timedelta(hours=1)
_MIN_RSA_BITS = 2048
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_PEM = re.compile(
    rb"-----BEGIN (?P<label>[A-Z ]+)-----\s+(?P<body>[A-Za-z0-9+/=\s]+?)-----END (?P=label)-----"
)


class CertificateRequestError(ApplianceError):
    """A member's certificate request, or the CA asked to sign it, cannot be used."""


@dataclass(frozen=True)
class MemberCA:
    """What the first host knows of the member, from the inventory, not from the request."""

    #: The request's common name must be this (it names the member: no mix-ups).
    common_name: str
    #: SPIFFE trust domain of the site's PKI: the CA certificate carries spiffe://DOMAIN.
    trust_domain: str
    #: How many CAs may sit below it (`ziti pki create intermediate --max-path-len`).
    max_path_len: int = 1
    days: int = VALID_DAYS


def _request(data: bytes) -> x509.CertificateSigningRequest:
    """The one request in ``data``. `ziti pki create csr` labels its PEM block
    CERTIFICATE although it holds a request, so the label is not trusted: the DER is."""
    blocks = list(_PEM.finditer(data))
    if len(blocks) != 1:
        raise CertificateRequestError(
            f"expected one PEM certificate request, found {len(blocks)} PEM blocks",
            hint="pass the file `ziti pki create csr` wrote (certs/request.cert) unchanged",
        )
    try:
        der = base64.b64decode(b"".join(blocks[0]["body"].split()), validate=True)
        return x509.load_der_x509_csr(der)
    except (ValueError, binascii.Error) as exc:
        raise CertificateRequestError(
            f"the PEM block ({blocks[0]['label'].decode()}) is not a certificate request",
            hint="pass the file `ziti pki create csr` wrote (certs/request.cert) unchanged",
        ) from exc


def _check_key(key: object) -> None:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS:
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES):
        return
    raise CertificateRequestError(
        f"the request's key ({type(key).__name__}) is not RSA of {_MIN_RSA_BITS} bits or more "
        "nor EC on P-256, P-384 or P-521",
        hint="make the member's CA with `ziti pki create ca` defaults (RSA 4096)",
    )


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


_RootKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _root(cert_pem: bytes, key_pem: bytes) -> tuple[x509.Certificate, _RootKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateRequestError(
            f"the root CA's certificate or key cannot be read: {exc}",
            hint="point --ca-cert and --ca-key at root-ca/certs/root-ca.cert and "
            "root-ca/keys/root-ca.key of the site's PKI",
        ) from exc
    if not isinstance(key, _RootKey) or key.public_key() != cert.public_key():
        raise CertificateRequestError(
            "the root CA's key does not belong to its certificate",
            hint="restore root-ca/keys/root-ca.key from where the site keeps it offline",
        )
    return cert, key


def _hash(root: x509.Certificate) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The root's own hash, as `ziti pki` signs under it (SHA-256 for its RSA root)."""
    used = root.signature_hash_algorithm
    return (
        used if isinstance(used, hashes.SHA256 | hashes.SHA384 | hashes.SHA512) else hashes.SHA256()
    )


def sign_member_ca(
    request_pem: bytes,
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    member: MemberCA,
    *,
    now: datetime | None = None,
) -> bytes:
    """The member's CA certificate (PEM), issued by the root for the request's own key.

    Refused: a request that is not signed by its key (no proof the member holds it), one
    for another name, a weak key, a root whose key and certificate do not match, and a
    root already expired.
    """
    request = _request(request_pem)
    if not request.is_signature_valid:
        raise CertificateRequestError(
            "the request is not signed by the key it carries: it was altered on the way",
            hint="rerun the install: the member's request is read again from the member",
        )
    public_key = request.public_key()
    _check_key(public_key)
    asked = _common_name(request.subject)
    if asked != member.common_name:
        raise CertificateRequestError(
            f"the request is for {asked!r}, not for {member.common_name!r}",
            hint="each member's request must name that member's signing CA",
        )
    root, root_key = _root(ca_cert_pem, ca_key_pem)
    now = now or datetime.now(UTC)
    not_after = min(now + timedelta(days=member.days), root.not_valid_after_utc)
    if not_after <= now:
        raise CertificateRequestError(
            f"the root CA expired on {root.not_valid_after_utc:%Y-%m-%d}",
            hint="the site's PKI must be renewed before another controller can join",
        )
    try:  # Go chains by the issuer's own key identifier when it has one
        ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=member.max_path_len), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority, critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{member.trust_domain}")]
            ),
            critical=False,
        )
        .sign(root_key, _hash(root))
    )
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:  # pragma: no cover - a library fault
        raise CertificateRequestError(f"the signed certificate does not verify: {exc}") from exc
    return cert.public_bytes(serialization.Encoding.PEM)
