"""/api/v1/audit: browse the log, its integrity status, a check on demand, and exports
(auditors only)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from appliance.admin.api._rows import from_row
from appliance.admin.audit_watch import AuditStatus, records_in_log, watch_of
from appliance.admin.deps import (
    CurrentAuditor,
    CurrentReader,
    DbSession,
    Settings,
    client_of,
    reads_only,
)
from appliance.admin.services.audit_checks import check_now
from appliance.admin.services.audit_exports import export_archive
from appliance.audit.check import to_record
from appliance.audit.format import Record
from appliance.audit.record import record_event
from appliance.db.models import AuditEvent

__all__ = ["router"]

router = APIRouter()


class StatusOut(BaseModel):
    """The last integrity check of the live log, and how much of the log it covered.

    ``records`` and ``checkpoints`` are what the check proved; ``log_records`` is how many
    records the log holds now, ``unchecked`` how many of them came after the check.
    """

    ok: bool | None
    message: str
    checked_at: datetime | None
    records: int
    checkpoints: int
    log_records: int
    unchecked: int
    summary: str

    @classmethod
    def of(cls, status: AuditStatus, log_records: int) -> StatusOut:
        """From the watch's status and the log's size now."""
        return from_row(
            cls,
            status,
            log_records=log_records,
            unchecked=max(log_records - status.records, 0) if status.ok else log_records,
            summary=status.summary(log_records),
        )


class ExportIn(BaseModel):
    """What to export."""

    since: datetime
    until: datetime
    types: list[str] = Field(default_factory=list, max_length=32)
    format: Literal["jsonl", "csv"] = "jsonl"


@router.get("/audit/records", response_model=list[Record], tags=["audit"])
def records(
    user: CurrentReader,
    db: DbSession,
    request: Request,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = Query(None, max_length=64),
    actor: str | None = Query(None, max_length=64),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
) -> list[Record]:
    """Records, newest first, filtered; the read itself is recorded."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc())
    if since is not None:
        query = query.where(AuditEvent.at >= _aware(since))
    if until is not None:
        query = query.where(AuditEvent.at <= _aware(until))
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    if actor:
        query = query.where(AuditEvent.actor == actor)
    found = [
        replace(to_record(r), hash=r.hash) for r in db.scalars(query.limit(limit).offset(offset))
    ]
    record_event(
        db,
        actor=user.username,
        action="audit.read",
        client=client_of(request),
        details={"action": action, "actor": actor, "returned": len(found)},
    )
    return found


@router.get("/audit/status", response_model=StatusOut, tags=["audit"])
@reads_only
def status(_: CurrentReader, db: DbSession, request: Request) -> StatusOut:
    """The live log's last integrity check (at start, on a schedule, or when asked)."""
    watch = getattr(request.app.state, "audit_watch", None)
    if watch is None:
        return StatusOut.of(AuditStatus(message="the audit watch is off"), records_in_log(db))
    return StatusOut.of(watch.status, records_in_log(db))


@router.post("/audit/check", response_model=StatusOut, tags=["audit"])
def check(user: CurrentReader, db: DbSession, request: Request) -> StatusOut:
    """Check the whole live log now (admins and auditors); recorded as ``audit.check``.

    A failed check is an answer, not an error: ``ok`` is false and ``message`` names the
    first bad record.
    """
    result = check_now(db, watch_of(request), actor=user.username, client=client_of(request))
    return StatusOut.of(result, records_in_log(db))


@router.post(
    "/audit/exports", tags=["audit"], responses={200: {"content": {"application/x-tar": {}}}}
)
def create_export(
    body: ExportIn, user: CurrentAuditor, db: DbSession, settings: Settings, request: Request
) -> Response:
    """An export archive that verifies offline (`appliance audit verify FILE`)."""
    name, data = export_archive(
        db,
        settings,
        since=_aware(body.since),
        until=_aware(body.until),
        types=body.types or None,
        fmt=body.format,
        actor=user.username,
        client=client_of(request),
    )
    return Response(
        data,
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
