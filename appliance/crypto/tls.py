"""A host's own TLS certificate for a loopback or overlay service: ECDSA P-384, SHA-384.

The admin service is reached on loopback (through SSH) or over the overlay, never by a
public name, so a certificate made on the host itself is enough; a site that runs its own
CA replaces the two files. The private key is made where it is used and never leaves it.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance._fsutil import atomic_write_bytes

__all__ = ["write_self_signed"]

VALID_DAYS = 825  # the longest validity common TLS clients accept for a leaf


def write_self_signed(
    folder: Path, name: str, *, ips: tuple[str, ...] = ("127.0.0.1",), now: datetime | None = None
) -> bool:
    """Write ``folder``/key.pem (0600) and cert.pem unless both exist; True when written."""
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    if key_path.exists() and cert_path.exists():
        return False
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    names: list[x509.GeneralName] = [x509.DNSName(name), x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Valid from an hour ago: a host whose clock is behind, or stepped back, still
        # accepts it (the access proxies on other hosts check it).
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA384())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(key_path, key_pem, mode=0o600)  # the key first: a cert alone is useless
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return True
