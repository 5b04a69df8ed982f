"""The one function that records an audit event in the caller's transaction.

Every admin-service action (and installer runs, and controller events) goes through
``record_event``, in the same transaction as the change it describes, so a change is never
committed without its record. Appending locks the log's head row, takes the next sequence
number and the previous record's hash, and chains the new record to it; the record is
durable when the transaction commits (SQLite synchronous=FULL, PostgreSQL's default).
Records that accompany no change can go through the batching writer instead
(:mod:`appliance.audit.group_commit`); both chain onto the same locked head.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.audit.format import GENESIS, Record, record_hash, timestamp
from appliance.db.models import AuditEvent, AuditHead, utcnow

__all__ = ["chained_record", "record_event"]


def chained_record(
    seq: int,
    prev_hash: str,
    *,
    actor: str,
    action: str,
    target: str = "",
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
    client: str = "",
    now: datetime,
) -> Record:
    """Record ``seq`` after the one whose hash is ``prev_hash``, fields cut to the columns'
    sizes, with its hash filled in."""
    record = Record(
        seq=seq,
        at=timestamp(now),
        actor=actor[:64],
        action=action[:64],
        target=target[:256],
        outcome=outcome[:16],
        client=client,
        details=details or {},
        prev_hash=prev_hash,
    )
    return replace(record, hash=record_hash(record))


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str = "",
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
    client: str = "",
) -> AuditEvent:
    """Append a record to ``session`` (committed with the caller's change)."""
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    now = utcnow()
    record = chained_record(
        head.seq + 1,
        head.hash,
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        details=details,
        client=client,
        now=now,
    )
    event = AuditEvent(
        seq=record.seq,
        at=now,
        actor=record.actor,
        action=record.action,
        target=record.target,
        outcome=record.outcome,
        details=record.details,
        client=record.client,
        prev_hash=record.prev_hash,
        hash=record.hash,
    )
    session.add(event)
    head.seq, head.hash = record.seq, record.hash
    session.flush()
    return event
