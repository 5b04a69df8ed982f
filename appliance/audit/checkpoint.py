"""Signed checkpoints: an ECDSA P-384 signature over the Merkle root of records 1..N.

The statement signed is text, so an auditor can check it with openssl by hand::

    appliance-audit-checkpoint/1
    <tree size>
    <root hash, hex>
    <created at, ISO 8601 UTC>

The signing key lives with the admin service (``audit-signing-key.pem`` in its data
directory, mode 0600), made on first use; exports carry its public key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance._fsutil import atomic_write_bytes
from appliance.audit.format import timestamp
from appliance.audit.merkle import MerkleTree
from appliance.db.models import AuditCheckpoint, AuditEvent, utcnow
from appliance.errors import ApplianceError

__all__ = [
    "KEY_FILE",
    "AuditIntegrityError",
    "Checkpoint",
    "key_id",
    "load_or_create_key",
    "make_checkpoint",
    "public_key_pem",
    "statement",
    "verify_checkpoint",
]

KEY_FILE = "audit-signing-key.pem"


class AuditIntegrityError(ApplianceError):
    """The audit log or an export of it is not what was recorded; names the first bad item."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head, as stored and exported."""

    tree_size: int
    root_hash: str
    created_at: str
    key_id: str
    signature: str  # hex DER

    def as_dict(self) -> dict[str, object]:
        """For JSON."""
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "created_at": self.created_at,
            "key_id": self.key_id,
            "signature": self.signature,
        }


def statement(tree_size: int, root_hash: str, created_at: str) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return f"appliance-audit-checkpoint/1\n{tree_size}\n{root_hash}\n{created_at}\n".encode()


def load_or_create_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The service's P-384 audit signing key; created (0600) the first time."""
    path = data_dir / KEY_FILE
    if not path.exists():
        key = ec.generate_private_key(ec.SECP384R1())
        atomic_write_bytes(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            mode=0o600,
        )
    loaded = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
        loaded.curve, ec.SECP384R1
    ):
        raise AuditIntegrityError(f"{path} is not an ECDSA P-384 key")
    return loaded


def public_key_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The public half, PEM."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """sha256 of the public key's PEM, hex: names the key in checkpoints."""
    return hashlib.sha256(public_key_pem(key)).hexdigest()


def make_checkpoint(db: Session, key: ec.EllipticCurvePrivateKey) -> AuditCheckpoint | None:
    """Sign the Merkle root of every record so far; None when nothing is new."""
    hashes_ = db.scalars(select(AuditEvent.hash).order_by(AuditEvent.seq)).all()
    last = db.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()))
    if not hashes_ or (last is not None and last.tree_size == len(hashes_)):
        return None
    tree = MerkleTree()
    for digest in hashes_:
        tree.append(bytes.fromhex(digest))
    root_hex = tree.root().hex()
    created = utcnow()
    signature = key.sign(
        statement(len(hashes_), root_hex, timestamp(created)), ec.ECDSA(hashes.SHA384())
    )
    row = AuditCheckpoint(
        tree_size=len(hashes_),
        root_hash=root_hex,
        created_at=created,
        key_id=key_id(key),
        signature=signature.hex(),
    )
    db.add(row)
    db.flush()
    return row


def verify_checkpoint(checkpoint: Checkpoint, public: ec.EllipticCurvePublicKey) -> None:
    """Raise AuditIntegrityError unless ``public`` signed this checkpoint."""
    if checkpoint.key_id != key_id(public):
        raise AuditIntegrityError(
            f"checkpoint of {checkpoint.tree_size} records: signed by key "
            f"{checkpoint.key_id[:16]}…, expected key {key_id(public)[:16]}…"
        )
    try:
        public.verify(
            bytes.fromhex(checkpoint.signature),
            statement(checkpoint.tree_size, checkpoint.root_hash, checkpoint.created_at),
            ec.ECDSA(hashes.SHA384()),
        )
    except (InvalidSignature, ValueError) as exc:
        raise AuditIntegrityError(
            f"checkpoint of {checkpoint.tree_size} records: the signature does not verify "
            "with the audit public key (altered or replaced)"
        ) from exc
