"""Carry records forward after a database is restored from an older snapshot.

A rollback puts back the admin database as it was before an upgrade; every audit record
made since then would vanish from the live log. The restored log is a prefix of the log
it replaced (same records, same hashes, up to its head), so the later records can be
copied verbatim: they chain on exactly, with their own sequence numbers, times and
hashes, and so do the checkpoints signed over them. Nothing is re-signed or rewritten.
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.audit.check import to_record
from appliance.audit.checkpoint import AuditIntegrityError
from appliance.audit.format import GENESIS, record_hash
from appliance.db.models import AuditCheckpoint, AuditEvent, AuditHead

__all__ = ["carry_records"]

Row = TypeVar("Row", AuditEvent, AuditCheckpoint)


def carry_records(target: Session, source: Session) -> int:
    """Copy ``source``'s records beyond ``target``'s head into ``target``; return how many.

    Refuses (AuditIntegrityError, nothing written) when the logs are not one chain: the
    source's record at the target's head must be the same record, and every copied record
    must hash to what it says and link to the one before.
    """
    head = target.get(AuditHead, 1)
    seq, last = (head.seq, head.hash) if head is not None else (0, GENESIS)
    if seq:
        same = source.scalars(select(AuditEvent.hash).where(AuditEvent.seq == seq)).first()
        if same != last:
            raise AuditIntegrityError(
                f"the logs diverge at record {seq}: the restored log is not a prefix of the "
                "replaced one; nothing was carried"
            )
    rows = source.scalars(select(AuditEvent).where(AuditEvent.seq > seq).order_by(AuditEvent.seq))
    copied = 0
    for row in rows:
        if row.seq != seq + 1 or row.prev_hash != last or record_hash(to_record(row)) != row.hash:
            raise AuditIntegrityError(
                f"record {row.seq} of the replaced log does not chain on; nothing was carried"
            )
        target.add(_copy(row))
        seq, last, copied = row.seq, row.hash, copied + 1
    if not copied:
        return 0
    if head is None:
        target.add(AuditHead(id=1, seq=seq, hash=last))
    else:
        head.seq, head.hash = seq, last
    signed = target.scalar(select(func.max(AuditCheckpoint.tree_size))) or 0
    for checkpoint in source.scalars(
        select(AuditCheckpoint).where(AuditCheckpoint.tree_size > signed)
    ):
        target.add(_copy(checkpoint))
    target.commit()
    return copied


def _copy(row: Row) -> Row:
    """The same row for another session: every column but the surrogate key, verbatim."""
    model = type(row)
    columns = [c.key for c in model.__table__.columns if c.key != "id"]
    return model(**{key: getattr(row, key) for key in columns})
