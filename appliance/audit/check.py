"""Checking the live log in the database: chain, sequence, head, checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.audit.checkpoint import (
    AuditIntegrityError,
    Checkpoint,
    require_signer,
    verify_checkpoint,
)
from appliance.audit.format import GENESIS, Record, record_hash, timestamp
from appliance.audit.merkle import MerkleTree
from appliance.db.models import AuditCheckpoint, AuditEvent, AuditHead

__all__ = ["CheckResult", "check_log", "to_record"]


@dataclass(frozen=True)
class CheckResult:
    """A log that passed: how many records and checkpoints were proven."""

    records: int
    checkpoints: int


def to_record(row: AuditEvent) -> Record:
    """The hashed form of a database row."""
    return Record(
        seq=row.seq,
        at=timestamp(row.at),
        actor=row.actor,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        client=row.client,
        details=row.details,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def check_log(db: Session, public: ec.EllipticCurvePublicKey) -> CheckResult:
    """Verify every record and checkpoint; raise AuditIntegrityError naming the first bad one.

    A key that signed none of the log's checkpoints is refused first with
    AuditKeyMismatchError: that is the wrong key, not a tampered log.
    """
    require_signer(db, public)
    checkpoints = list(db.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size)))
    pending = iter(checkpoints)
    next_checkpoint = next(pending, None)
    tree = MerkleTree()
    expected_seq, prev = 1, GENESIS
    for row in db.scalars(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=5000)
    ):
        record = to_record(row)
        if record.seq != expected_seq:
            raise AuditIntegrityError(
                f"record {expected_seq} is missing: the log jumps from record "
                f"{expected_seq - 1} to record {record.seq}"
            )
        if record.prev_hash != prev:
            raise AuditIntegrityError(
                f"record {record.seq} does not follow record {record.seq - 1}: it names "
                f"{record.prev_hash[:16]}… as the previous hash, expected {prev[:16]}…"
            )
        if record_hash(record) != record.hash:
            raise AuditIntegrityError(
                f"record {record.seq} ({record.action} by {record.actor}) was altered: its "
                "content does not match its hash"
            )
        tree.append(bytes.fromhex(record.hash))
        while next_checkpoint is not None and next_checkpoint.tree_size == record.seq:
            _check_checkpoint(next_checkpoint, tree.root().hex(), public)
            next_checkpoint = next(pending, None)
        expected_seq, prev = record.seq + 1, record.hash
    if next_checkpoint is not None:
        raise AuditIntegrityError(
            f"a checkpoint covers {next_checkpoint.tree_size} records but the log holds "
            f"only {expected_seq - 1}: records were removed from the end"
        )
    head = db.get(AuditHead, 1)
    if head is not None and (head.seq, head.hash) != (expected_seq - 1, prev):
        raise AuditIntegrityError(
            f"the log's head says record {head.seq}, but the last record is "
            f"{expected_seq - 1}: records were removed from the end or the head was altered"
        )
    return CheckResult(records=expected_seq - 1, checkpoints=len(checkpoints))


def _check_checkpoint(
    row: AuditCheckpoint,
    root_hex: str,
    public: ec.EllipticCurvePublicKey,
) -> None:
    checkpoint = Checkpoint(
        row.tree_size, row.root_hash, timestamp(row.created_at), row.key_id, row.signature
    )
    verify_checkpoint(checkpoint, public)
    if checkpoint.root_hash != root_hex:
        raise AuditIntegrityError(
            f"the checkpoint of records 1..{row.tree_size} does not match them: a record "
            "in that range was changed"
        )
