"""The audit log's page: browse and filter, the integrity line with a "check now" button,
and the auditors' export form."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from appliance.admin.audit_watch import AuditStatus, AuditWatch, records_in_log, watch_of
from appliance.admin.deps import (
    DbSession,
    ForbiddenError,
    Settings,
    client_of,
)
from appliance.admin.services.audit_checks import check_now
from appliance.admin.services.audit_exports import export_archive
from appliance.admin.web.common import check_csrf, logged_in, render_for
from appliance.audit.record import record_event
from appliance.db.models import AuditEvent, Role, utcnow

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/audit", response_model=None)
def audit_page(
    request: Request,
    db: DbSession,
    action: str | None = None,
    actor: str | None = None,
) -> Response:
    """Browse and filter the log, see when it was last checked; auditors also export."""
    web_session = logged_in(request, db)
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(200)
    if action:
        query = query.where(AuditEvent.action.startswith(action[:64]))
    if actor:
        query = query.where(AuditEvent.actor == actor[:64])
    found = db.scalars(query).all()
    record_event(
        db,
        actor=web_session.user.username,
        action="audit.read",
        client=client_of(request),
        details={"action": action, "actor": actor, "returned": len(found)},
    )
    watch: AuditWatch | None = getattr(request.app.state, "audit_watch", None)
    integrity = watch.status if watch is not None else AuditStatus()
    today = utcnow().date()
    return render_for(
        request,
        "audit.html",
        web_session,
        auditor=web_session.user.role == Role.auditor,
        records=found,
        filters={"action": action, "actor": actor},
        integrity=integrity,
        integrity_summary=integrity.summary(records_in_log(db)),
        since=(today.replace(day=1)).isoformat(),
        until=today.isoformat(),
    )


@router.post("/audit/check", response_model=None)
def audit_check_form(
    request: Request, db: DbSession, csrf_token: Annotated[str, Form(max_length=128)]
) -> Response:
    """Check the whole log now (admins and auditors); the check is recorded."""
    web_session = logged_in(request, db)
    check_csrf(web_session, csrf_token)
    check_now(db, watch_of(request), actor=web_session.user.username, client=client_of(request))
    return RedirectResponse("/audit", status_code=303)


@router.post("/audit/export", response_model=None)
def audit_export_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Annotated[str, Form(max_length=128)],
    since: Annotated[date, Form()],
    until: Annotated[date, Form()],
    types: Annotated[str, Form(max_length=1024)] = "",
    format: Annotated[Literal["jsonl", "csv"], Form()] = "jsonl",
) -> Response:
    """Download an export (auditors only); it verifies offline."""
    web_session = logged_in(request, db)
    check_csrf(web_session, csrf_token)
    if web_session.user.role != Role.auditor:
        raise ForbiddenError(
            f"{web_session.user.username} is an admin: only auditors export the audit log"
        )
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(until, time.max, tzinfo=UTC)
    name, data = export_archive(
        db,
        settings,
        since=start,
        until=end,
        types=[t.strip() for t in types.split(",") if t.strip()] or None,
        fmt=format,
        actor=web_session.user.username,
        client=client_of(request),
    )
    return Response(
        data,
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
