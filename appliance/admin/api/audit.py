"""/api/v1/audit: browse the log, its integrity status, and exports (auditors only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from appliance.admin.deps import CurrentAuditor, CurrentReader, DbSession, Settings, client_of
from appliance.admin.services.audit_exports import export_archive
from appliance.audit.check import to_record
from appliance.audit.record import record_event
from appliance.db.models import AuditEvent

__all__ = ["router"]

router = APIRouter()


class RecordOut(BaseModel):
    """One audit record, with its place in the chain."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    outcome: str
    client: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class StatusOut(BaseModel):
    """The last integrity check of the live log."""

    ok: bool | None
    message: str
    checked_at: datetime | None


class ExportIn(BaseModel):
    """What to export."""

    since: datetime
    until: datetime
    types: list[str] = Field(default_factory=list, max_length=32)
    format: Literal["jsonl", "csv"] = "jsonl"


@router.get("/audit/records", response_model=list[RecordOut], tags=["audit"])
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
) -> list[RecordOut]:
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
        RecordOut(**{**to_record(r).fields(), "hash": r.hash})
        for r in db.scalars(query.limit(limit).offset(offset))
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
def status(_: CurrentReader, request: Request) -> StatusOut:
    """The live log's last integrity check (at start and on a schedule)."""
    watch = getattr(request.app.state, "audit_watch", None)
    if watch is None:
        return StatusOut(ok=None, message="the audit watch is off", checked_at=None)
    return StatusOut(
        ok=watch.status.ok, message=watch.status.message, checked_at=watch.status.checked_at
    )


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
