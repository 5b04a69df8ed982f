"""The vendor's signing keys for bundle metadata: ECDSA P-384, one folder, PEM files.

A keys folder holds::

    root-1.pem … root-N.pem        root keys (keep them offline; only `keys init` and a
                                   root rotation need them)
    targets.pem snapshot.pem timestamp.pem
    1.root.json                    the signed root metadata, one file per version
    root.json                      the newest root (same bytes as the highest N.root.json)
    state.json                     the last metadata versions issued, so they only grow

Private keys are PKCS#8 PEM, mode 0600, optionally encrypted with a passphrase
(PBKDF2 and AES-256-CBC, both FIPS-approved).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner, SSlibKey

from appliance._fsutil import atomic_write_bytes
from appliance.errors import SigningKeyError

__all__ = [
    "SCHEME",
    "KeyPair",
    "fingerprint",
    "generate_key",
    "load_signer",
    "passphrase_from_env",
    "private_key_path",
    "write_private_key",
]

#: The only signature scheme the appliance issues or accepts.
SCHEME = "ecdsa-sha2-nistp384"


@dataclass(frozen=True)
class KeyPair:
    """A signer and its public key, as python-tuf wants them."""

    signer: CryptoSigner
    public: SSlibKey

    @property
    def keyid(self) -> str:
        """The TUF key id (sha256 of the canonical public key)."""
        return self.public.keyid


def generate_key() -> KeyPair:
    """A fresh ECDSA P-384 key pair."""
    private = ec.generate_private_key(ec.SECP384R1())
    public = SSlibKey.from_crypto(private.public_key(), scheme=SCHEME)
    return KeyPair(CryptoSigner(private, public), public)


def private_key_path(keys_dir: Path, role: str, index: int | None = None) -> Path:
    """``root-2.pem`` for root keys, ``targets.pem`` for the others."""
    return keys_dir / (f"{role}-{index}.pem" if index is not None else f"{role}.pem")


def write_private_key(path: Path, pair: KeyPair, passphrase: bytes | None) -> None:
    """Write the private key as PKCS#8 PEM, mode 0600, encrypted when a passphrase is given."""
    private = pair.signer._private_key  # the signer owns the key; we only serialise it
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    atomic_write_bytes(path, pem, mode=0o600)


def load_signer(path: Path, passphrase: bytes | None) -> KeyPair:
    """Load a private key written by write_private_key; refuse group- or world-readable keys."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(
            f"signing key {path} does not exist",
            hint="pass the folder `appliance keys init` made",
        ) from None
    except OSError as exc:
        raise SigningKeyError(f"cannot read signing key {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise SigningKeyError(
            f"signing key {path} is readable by others (mode {mode & 0o777:o}); expected 600",
            hint=f"chmod 600 {path}",
        )
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
    if encrypted and not passphrase:
        raise SigningKeyError(
            f"signing key {path} is encrypted and no passphrase was given",
            hint="set APPLIANCE_KEY_PASSPHRASE or answer the prompt",
        )
    try:
        private = serialization.load_pem_private_key(data, passphrase if encrypted else None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(
            f"cannot load signing key {path}: wrong passphrase or not a PEM private key"
        ) from exc
    if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
        private.curve, ec.SECP384R1
    ):
        raise SigningKeyError(f"signing key {path} is not an ECDSA P-384 key")
    public = SSlibKey.from_crypto(private.public_key(), scheme=SCHEME)
    return KeyPair(CryptoSigner(private, public), public)


def fingerprint(root_bytes: bytes) -> str:
    """``sha256:<hex>`` of root metadata exactly as written: what the paperwork prints."""
    return "sha256:" + hashlib.sha256(root_bytes).hexdigest()


def passphrase_from_env() -> bytes | None:
    """The passphrase in ``APPLIANCE_KEY_PASSPHRASE``, if set."""
    value = os.environ.get("APPLIANCE_KEY_PASSPHRASE")
    return value.encode("utf-8") if value else None
