"""Signed checkpoints: an ECDSA P-384 signature over the Merkle root of records 1..N.

The statement signed is text, so an auditor can check it with openssl by hand::

    appliance-audit-checkpoint/1
    <tree size>
    <root hash, hex>
    <created at, ISO 8601 UTC>

The signing key lives with the admin service (``audit-signing-key.pem`` in its data
directory, mode 0600; see :mod:`appliance.audit.signing_key`); exports carry its public key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.audit.format import timestamp
from appliance.audit.merkle import MerkleTree
from appliance.audit.signing_key import (
    KEY_FILE,
    AuditKeyMismatchError,
    key_id,
    load_or_create_key,
    public_key_pem,
)
from appliance.db.models import AuditCheckpoint, AuditEvent, utcnow
from appliance.errors import ApplianceError

__all__ = [
    "KEY_FILE",
    "AuditIntegrityError",
    "Checkpoint",
    "key_id",
    "load_or_create_key",
    "log_tree",
    "make_checkpoint",
    "public_key_pem",
    "require_signer",
    "statement",
    "verify_checkpoint",
]


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


def require_signer(
    db: Session, key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey
) -> None:
    """Raise AuditKeyMismatchError when the log has checkpoints and ``key`` signed none.

    That is a key mix-up (another data directory's key), not a verdict on the log: nothing
    is checked against such a key, and nothing is signed with it. A log with some
    checkpoints by this key and some by another is a different matter: the check names
    the foreign checkpoint as altered or replaced.
    """
    signers = db.execute(
        select(AuditCheckpoint.key_id, func.count()).group_by(AuditCheckpoint.key_id)
    ).all()
    mine = key_id(key)
    if not signers or any(signer == mine for signer, _ in signers):
        return
    total = sum(count for _, count in signers)
    named = ", ".join(f"{signer[:16]}…" for signer, _ in signers)
    their = "its checkpoint is" if total == 1 else f"all {total} of its checkpoints are"
    raise AuditKeyMismatchError(
        f"key {mine[:16]}… did not sign this log: {their} signed by key {named}; it is "
        "not the signing key of the admin service that keeps this log, so nothing was "
        "checked or signed with it"
    )


def log_tree(db: Session) -> MerkleTree:
    """The Merkle tree of every record in the log now."""
    query = select(AuditEvent.hash).order_by(AuditEvent.seq)
    hashes_ = db.connection().execute(query).scalars().all()  # Core rows: no ORM per record
    return MerkleTree.from_leaves([bytes.fromhex(digest) for digest in hashes_])


def make_checkpoint(
    db: Session, key: ec.EllipticCurvePrivateKey, tree: MerkleTree | None = None
) -> AuditCheckpoint | None:
    """Sign the Merkle root of every record so far; None when nothing is new.

    ``tree`` is the log's tree (``log_tree``) when the caller has just built it. Refuses
    (AuditKeyMismatchError) a key that signed none of the log's checkpoints: its
    checkpoint would read as a forgery to everyone holding the service's key.
    """
    require_signer(db, key)
    tree = log_tree(db) if tree is None else tree
    size = tree.size
    last = db.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()))
    if not size or (last is not None and last.tree_size >= size):
        return None
    root_hex = tree.root().hex()
    created = utcnow()
    signature = key.sign(statement(size, root_hex, timestamp(created)), ec.ECDSA(hashes.SHA384()))
    row = AuditCheckpoint(
        tree_size=size,
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
