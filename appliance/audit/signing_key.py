"""The audit signing key: where it lives, who may make it, and whether it signed a log.

The admin service keeps one ECDSA P-384 key, ``audit-signing-key.pem`` (mode 0600) in its
data directory. Only the service (at start) or an explicit ``appliance audit init-key``
makes it, and only once: creation is exclusive, so two processes starting together end up
with the same key. Everything that reads, checks or exports the log only loads it
(:func:`load_key`), and refuses when it is missing rather than minting a key that did not
sign the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance._fsutil import fsync_dir
from appliance.errors import ApplianceError

__all__ = [
    "KEY_FILE",
    "AuditKeyError",
    "AuditKeyMismatchError",
    "AuditKeyMissingError",
    "create_key",
    "key_id",
    "load_key",
    "load_or_create_key",
    "public_key_pem",
]

KEY_FILE = "audit-signing-key.pem"


class AuditKeyError(ApplianceError):
    """The audit signing key is missing, unreadable, or not the one that signed the log.

    An operational problem (the wrong key was pointed at), kept apart from
    ``AuditIntegrityError``, which says the log itself is not what was recorded.
    """


class AuditKeyMissingError(AuditKeyError):
    """No signing key where one was expected; tools that only read never make one."""

    def __init__(self, message: str, *, path: Path, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        #: The key file that was looked for.
        self.path = path


class AuditKeyMismatchError(AuditKeyError):
    """The key at hand did not sign the log's checkpoints (another data directory's key)."""


def public_key_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The public half, PEM."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """sha256 of the public key's PEM, hex: names the key in checkpoints."""
    return hashlib.sha256(public_key_pem(key)).hexdigest()


def load_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The signing key in ``data_dir``; :class:`AuditKeyMissingError` if there is none.

    Never creates a key: a fresh key would not be the one that signed the log.
    """
    path = data_dir / KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AuditKeyMissingError(
            f"no audit signing key in {data_dir} (expected {KEY_FILE} there; the admin "
            "service makes it at its first start)",
            path=path,
        ) from None
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit signing key {path}: {exc.strerror}") from exc
    try:
        loaded = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(
            f"{path}: expected an unencrypted PEM private key, found something else ({exc})"
        ) from exc
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
        loaded.curve, ec.SECP384R1
    ):
        raise AuditKeyError(f"{path}: expected an ECDSA P-384 key, found another kind of key")
    return loaded


def create_key(data_dir: Path) -> bool:
    """Make the signing key in ``data_dir`` (0600) unless one is there; True if made now.

    Exclusive: the key is written to a temporary file and hard-linked into place, so a
    key that another process made in the meantime is kept, never replaced.
    """
    path = data_dir / KEY_FILE
    if path.exists():
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{KEY_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False  # another process made it first: theirs is the key
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(data_dir)
    return True


def load_or_create_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The key in ``data_dir``, made first if there is none: for the service and tests only.

    Tools that read, check or export the log use :func:`load_key` instead.
    """
    create_key(data_dir)
    return load_key(data_dir)
