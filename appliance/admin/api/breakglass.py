"""/api/v1/breakglass: vendor access windows, two-person approved, and sealing the site.

Every route calls the site's :class:`~appliance.breakglass.service.Breakglass`, built once
by the app factory (:data:`~appliance.admin.deps.BreakglassDep`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from sqlalchemy import select

from appliance.admin.api._rows import from_row
from appliance.admin.deps import (
    BreakglassDep,
    CurrentAdmin,
    CurrentAuditor,
    CurrentReader,
    DbSession,
    RowId,
    Settings,
    client_of,
    reads_only,
)
from appliance.admin.services.audit_exports import export_archive
from appliance.admin.services.qr import qr_svg
from appliance.admin.services.recordings import (
    cast_of,
    find,
    record_viewing,
    window_recordings,
)
from appliance.audit.recordings.carried import carry
from appliance.breakglass.provisioning import Handover
from appliance.breakglass.recording.evidence import recorded_sessions
from appliance.breakglass.records import target_of
from appliance.breakglass.scope import scope_choices
from appliance.breakglass.windows import WindowAsk
from appliance.db.models import BreakglassWindow, WindowState, utcnow

__all__ = ["WindowOut", "router"]


router = APIRouter(prefix="/breakglass", tags=["break-glass"])


def _controller_first(breakglass: BreakglassDep) -> None:
    """Routes that work on the controller refuse once the caller is known (503), before
    the window is looked up, when no controller client can be had."""
    breakglass.controller()


ControllerFirst = Annotated[None, Depends(_controller_first)]


class WindowIn(BaseModel):
    """A request for vendor access."""

    reason: str = Field(min_length=1, max_length=2000)
    ticket: str = Field(min_length=1, max_length=128)
    scope: list[str] = Field(min_length=1, max_length=32)
    engineers: list[str] = Field(min_length=1, max_length=16)
    duration_minutes: int = Field(ge=1)
    starts_at: datetime | None = None


class ExtendIn(BaseModel):
    """More time for an active window: a new request, approved like the first."""

    minutes: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=2000)
    ticket: str = Field(min_length=1, max_length=128)


class DecisionIn(BaseModel):
    """The deciding admin's note."""

    note: str = Field(default="", max_length=2000)


class RevokeIn(BaseModel):
    """Why the window ends early."""

    reason: str = Field(default="revoked by an admin", min_length=1, max_length=500)


class WindowOut(BaseModel):
    """A window as the API shows it (never its tokens)."""

    id: int
    state: WindowState
    requester: str
    reason: str
    ticket: str
    scope: list[str]
    engineers: list[str]
    duration_minutes: int
    starts_at: datetime | None
    extends_id: int | None
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str
    activated_at: datetime | None
    ends_at: datetime | None
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str
    cleanup_confirmed_at: datetime | None
    cleanup_error: str | None

    @classmethod
    def of(cls, w: BreakglassWindow) -> WindowOut:
        """From the table row."""
        return from_row(cls, w, cleanup_error=(w.ziti_objects or {}).get("cleanup_error"))


class HandoverOut(BaseModel):
    """One engineer's enrollment token, shown once to the approving admin."""

    engineer: str
    identity: str
    jwt: str
    expires_at: datetime
    qr_svg: str
    #: The engineer's login secret for the vendor shell (ADR 0021); empty when the scope
    #: names no vendor shell. Shown once, stored only as a hash, dies with the window.
    shell_secret: str = ""


class ActivatedOut(BaseModel):
    """The window after a decision, and the tokens when it became active."""

    window: WindowOut
    handovers: list[HandoverOut]


class ConnectionOut(BaseModel):
    """A vendor engineer's open circuit."""

    engineer: str
    service: str
    since: datetime | None
    circuit_id: str


class SealOut(BaseModel):
    """What sealing ended."""

    ended: list[int]
    unconfirmed: list[int]


def _activated(window: BreakglassWindow, handovers: list[Handover]) -> ActivatedOut:
    return ActivatedOut(
        window=WindowOut.of(window),
        handovers=[
            HandoverOut(
                engineer=h.engineer,
                identity=h.identity_name,
                jwt=h.token.jwt,
                expires_at=h.token.expires_at,
                qr_svg=qr_svg(h.token.jwt),
                shell_secret=h.shell_secret,
            )
            for h in handovers
        ],
    )


class ScopeChoiceOut(BaseModel):
    """A service a window may name; ``shell_host``: the host its vendor shell reaches."""

    name: str
    shell_host: str | None


class ScopeChoicesOut(BaseModel):
    """What a window's scope may name. ``listed`` false: the site lists no services (an
    install before the list); any name is taken and checked at activation."""

    listed: bool
    services: list[ScopeChoiceOut]


@router.get("/services", response_model=ScopeChoicesOut)
def services(_: CurrentReader, bg: BreakglassDep) -> ScopeChoicesOut:
    """The services this site offers a window: its vendor shells and overlay services."""
    choices = scope_choices(bg.policy)
    return ScopeChoicesOut(
        listed=choices is not None,
        services=[ScopeChoiceOut(name=c.name, shell_host=c.shell_host) for c in choices or []],
    )


@router.post("/windows", response_model=WindowOut, status_code=201)
def request_window(
    body: WindowIn, admin: CurrentAdmin, db: DbSession, bg: BreakglassDep, request: Request
) -> WindowOut:
    """Ask for a window; another admin must approve it."""
    ask = WindowAsk(
        body.reason,
        body.ticket,
        body.scope,
        body.engineers,
        body.duration_minutes,
        _aware(body.starts_at),
    )
    window = bg.request_window(db, ask, requester=admin, client=client_of(request))
    return WindowOut.of(window)


@router.get("/windows", response_model=list[WindowOut])
@reads_only
def list_windows(_: CurrentReader, db: DbSession) -> list[WindowOut]:
    """Every window, newest first; the history stays."""
    rows = db.scalars(select(BreakglassWindow).order_by(BreakglassWindow.id.desc()))
    return [WindowOut.of(w) for w in rows]


@router.get("/windows/{window_id}", response_model=WindowOut)
@reads_only
def get_window(window_id: RowId, _: CurrentReader, db: DbSession, bg: BreakglassDep) -> WindowOut:
    """One window."""
    return WindowOut.of(bg.get_window(db, window_id))


@router.post("/windows/{window_id}/approve", response_model=ActivatedOut)
def approve(
    window_id: RowId,
    body: DecisionIn,
    admin: CurrentAdmin,
    db: DbSession,
    bg: BreakglassDep,
    _controller: ControllerFirst,
    request: Request,
) -> ActivatedOut:
    """Approve (not your own request); a window starting now is activated and its
    enrollment tokens are in this answer, once."""
    window = bg.get_window(db, window_id)
    handovers = bg.approve(db, window, approver=admin, note=body.note, client=client_of(request))
    return _activated(window, handovers)


@router.post("/windows/{window_id}/activate", response_model=ActivatedOut)
def activate(
    window_id: RowId,
    admin: CurrentAdmin,
    db: DbSession,
    bg: BreakglassDep,
    _controller: ControllerFirst,
    request: Request,
) -> ActivatedOut:
    """Start an approved window at its start time (its approver only); tokens once."""
    window = bg.get_window(db, window_id)
    handovers = bg.activate(db, window, admin=admin, client=client_of(request))
    return _activated(window, handovers)


@router.post("/windows/{window_id}/deny", response_model=WindowOut)
def deny(
    window_id: RowId,
    body: DecisionIn,
    admin: CurrentAdmin,
    db: DbSession,
    bg: BreakglassDep,
    request: Request,
) -> WindowOut:
    """Refuse a request (not your own)."""
    window = bg.get_window(db, window_id)
    bg.deny(db, window, approver=admin, note=body.note, client=client_of(request))
    return WindowOut.of(window)


@router.post("/windows/{window_id}/withdraw", response_model=WindowOut)
def withdraw(
    window_id: RowId, admin: CurrentAdmin, db: DbSession, bg: BreakglassDep, request: Request
) -> WindowOut:
    """Take back your own request before it starts."""
    window = bg.get_window(db, window_id)
    bg.withdraw(db, window, requester=admin, client=client_of(request))
    return WindowOut.of(window)


@router.post("/windows/{window_id}/extend", response_model=WindowOut, status_code=201)
def extend(
    window_id: RowId,
    body: ExtendIn,
    admin: CurrentAdmin,
    db: DbSession,
    bg: BreakglassDep,
    request: Request,
) -> WindowOut:
    """Ask for more time on an active window; approved like any request."""
    parent = bg.get_window(db, window_id)
    window = bg.request_extension(
        db,
        parent,
        requester=admin,
        reason=body.reason,
        ticket=body.ticket,
        minutes=body.minutes,
        client=client_of(request),
    )
    return WindowOut.of(window)


@router.post("/windows/{window_id}/revoke", response_model=WindowOut)
def revoke(
    window_id: RowId,
    body: RevokeIn,
    admin: CurrentAdmin,
    db: DbSession,
    bg: BreakglassDep,
    request: Request,
) -> WindowOut:
    """End an active window now: its identities and policies go, its circuits close.
    The end stands even if the controller is down (``cleanup_error`` then says why)."""
    window = bg.get_window(db, window_id)
    bg.revoke(db, window, actor=admin.username, reason=body.reason, client=client_of(request))
    return WindowOut.of(window)


@router.post("/seal", response_model=SealOut)
def seal(admin: CurrentAdmin, db: DbSession, bg: BreakglassDep, request: Request) -> SealOut:
    """End every window at once: active ones revoked, pending ones denied."""
    ended = bg.seal(db, admin=admin, client=client_of(request))
    unconfirmed = [
        w.id
        for w in db.scalars(select(BreakglassWindow).where(BreakglassWindow.id.in_(ended)))
        if w.activated_at is not None and w.cleanup_confirmed_at is None
    ]
    return SealOut(ended=ended, unconfirmed=unconfirmed)


@router.get("/windows/{window_id}/connections", response_model=list[ConnectionOut])
@reads_only
def connections(
    window_id: RowId,
    _: CurrentReader,
    db: DbSession,
    bg: BreakglassDep,
    _controller: ControllerFirst,
) -> list[ConnectionOut]:
    """Which vendor engineer is connected, to what, since when (from the controller)."""
    window = bg.get_window(db, window_id)
    return [
        ConnectionOut(
            engineer=c.engineer, service=c.service, since=c.since, circuit_id=c.circuit_id
        )
        for c in bg.connections(window)
    ]


@router.get(
    "/windows/{window_id}/evidence", responses={200: {"content": {"application/x-tar": {}}}}
)
def evidence(
    window_id: RowId,
    auditor: CurrentAuditor,
    db: DbSession,
    settings: Settings,
    bg: BreakglassDep,
    request: Request,
) -> Response:
    """The window's evidence: its audit records in a signed export that verifies offline
    (`appliance audit verify FILE`), with the vendor shell sessions it recorded; records
    about other things are stubs in the chain."""
    window = bg.get_window(db, window_id)
    target = target_of(window)
    name, data = export_archive(
        db,
        settings,
        since=window.created_at,
        until=utcnow(),
        types=["breakglass"],
        targets=[target],
        fmt="jsonl",
        actor=auditor.username,
        client=client_of(request),
        name=f"breakglass-window-{window.id}-evidence.tar",
        attachments=carry(settings.recordings_dir, recorded_sessions(db, target), target=target),
    )
    return Response(
        data,
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


class RecordingOut(BaseModel):
    """A recorded vendor shell session of the window, and whether it verified."""

    session_id: str
    window_id: int
    engineer: str
    host: str
    record: int
    manifest_sha256: str
    verified: bool
    problem: str | None
    started_at: str | None
    ended_at: str | None
    end_reason: str | None
    duration: float | None
    events: int | None


SessionId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


@router.get("/windows/{window_id}/recordings", response_model=list[RecordingOut])
def recordings(
    window_id: RowId,
    auditor: CurrentAuditor,
    db: DbSession,
    settings: Settings,
    bg: BreakglassDep,
    request: Request,
) -> list[RecordingOut]:
    """The window's recorded shell sessions (auditors only), each verified from the store
    against its audit record; the look is recorded in the window's log."""
    window = bg.get_window(db, window_id)
    found = window_recordings(db, settings, window)
    sessions = [r.session.session_id for r in found]
    record_viewing(db, window, auditor, client_of(request), sessions, "list")
    return [
        RecordingOut(
            session_id=r.session.session_id,
            window_id=r.session.window_id,
            engineer=r.session.engineer,
            host=r.session.host,
            record=r.session.seq,
            manifest_sha256=r.session.manifest_sha256,
            verified=r.report is not None,
            problem=r.problem,
            started_at=r.report.started_at if r.report else None,
            ended_at=r.report.ended_at if r.report else None,
            end_reason=r.report.end_reason if r.report else None,
            duration=r.report.duration if r.report else None,
            events=r.report.events if r.report else None,
        )
        for r in found
    ]


@router.get(
    "/windows/{window_id}/recordings/{session_id}/cast",
    responses={200: {"content": {"application/x-asciicast": {}}}},
)
def recording_cast(
    window_id: RowId,
    session_id: SessionId,
    auditor: CurrentAuditor,
    db: DbSession,
    settings: Settings,
    bg: BreakglassDep,
    request: Request,
) -> Response:
    """A verified recording's shell channel as asciicast v2 (auditors only), for the
    player or `appliance breakglass play FILE`; a recording that does not verify is
    refused. The viewing is recorded in the window's log."""
    window = bg.get_window(db, window_id)
    shown = find(window_recordings(db, settings, window), session_id)
    text = cast_of(shown)
    record_viewing(db, window, auditor, client_of(request), [session_id], "cast")
    name = f"window-{shown.session.window_id}-{session_id}.cast"
    return Response(
        text,
        media_type="application/x-asciicast",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
