"""The break-glass page: request, decide, watch, extend, revoke, seal (no JavaScript).

The same :class:`~appliance.breakglass.service.Breakglass` as /api/v1/breakglass; tokens
from an approval are shown on the answer page once, as the identity page shows enrollment
tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from appliance.admin.deps import BreakglassDep, DbSession, RowId, client_of, reads_only
from appliance.admin.services.qr import qr_svg
from appliance.admin.web.common import (
    admin_session,
    controller_status,
    logged_in,
    message_of,
    render_for,
    status_of,
)
from appliance.breakglass.errors import BreakglassError, BreakglassNotFoundError
from appliance.breakglass.provisioning import Handover
from appliance.breakglass.scope import scope_choices
from appliance.breakglass.windows import WindowAsk
from appliance.db.models import BreakglassWindow, WebSession
from appliance.errors import ApplianceError

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
Csrf = Annotated[str, Form(max_length=128)]


def _page(
    request: Request,
    db: DbSession,
    bg: BreakglassDep,
    web_session: WebSession,
    error: str | None = None,
    status: int = 200,
) -> Response:
    windows = db.scalars(select(BreakglassWindow).order_by(BreakglassWindow.id.desc())).all()
    return render_for(
        request,
        "breakglass.html",
        web_session,
        status,
        error=error,
        windows=windows,
        max_minutes=bg.policy.max_minutes,
        scope_choices=scope_choices(bg.policy),
        controller=controller_status(request),
    )


@router.get("/breakglass", response_model=None)
@reads_only
def breakglass_page(request: Request, db: DbSession, bg: BreakglassDep) -> Response:
    """Every window, newest first, with what the logged-in admin may do to each."""
    web_session = logged_in(request, db)
    return _page(request, db, bg, web_session)


@router.post("/breakglass/windows", response_model=None)
def request_form(
    request: Request,
    db: DbSession,
    bg: BreakglassDep,
    csrf_token: Csrf,
    reason: Annotated[str, Form(max_length=2000)],
    ticket: Annotated[str, Form(max_length=128)],
    engineers: Annotated[str, Form(max_length=1000)],
    duration_minutes: Annotated[int, Form(ge=1, le=100_000)],
    scope: Annotated[list[str] | None, Form(max_length=32)] = None,
    starts_at: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Request a window: the scope is the services ticked (or, where the site lists none,
    names typed); engineers are names separated by commas or spaces."""
    web_session = admin_session(request, db, csrf_token)
    try:
        names = _names(" ".join(scope or []))
        ask = WindowAsk(
            reason, ticket, names, _names(engineers), duration_minutes, _start(starts_at)
        )
        bg.request_window(db, ask, requester=web_session.user, client=client_of(request))
    except ApplianceError as exc:
        return _page(request, db, bg, web_session, message_of(exc), status_of(exc))
    return RedirectResponse("/breakglass", status_code=303)


@router.post("/breakglass/windows/{window_id}/{action}", response_model=None)
def window_action(
    window_id: RowId,
    action: str,
    request: Request,
    db: DbSession,
    bg: BreakglassDep,
    csrf_token: Csrf,
    note: Annotated[str, Form(max_length=2000)] = "",
    minutes: Annotated[int, Form(ge=0, le=100_000)] = 0,
    ticket: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """approve, activate, deny, withdraw, extend or revoke, from the window's buttons."""
    web_session = admin_session(request, db, csrf_token)
    admin, client = web_session.user, client_of(request)
    try:
        window = bg.get_window(db, window_id)
        handovers: list[Handover] = []
        if action == "approve":
            handovers = bg.approve(db, window, approver=admin, note=note, client=client)
        elif action == "activate":
            handovers = bg.activate(db, window, admin=admin, client=client)
        elif action == "deny":
            bg.deny(db, window, approver=admin, note=note, client=client)
        elif action == "withdraw":
            bg.withdraw(db, window, requester=admin, client=client)
        elif action == "extend":
            bg.request_extension(
                db,
                window,
                requester=admin,
                reason=note,
                ticket=ticket,
                minutes=minutes,
                client=client,
            )
        elif action == "revoke":
            bg.revoke(
                db,
                window,
                actor=admin.username,
                reason=note or "revoked by an admin",
                client=client,
            )
        else:
            raise BreakglassNotFoundError(f"no action {action!r} on a window")
    except ApplianceError as exc:
        return _page(request, db, bg, web_session, message_of(exc), status_of(exc))
    if handovers:
        return _tokens(request, web_session, window, handovers)
    return RedirectResponse("/breakglass", status_code=303)


@router.post("/breakglass/seal", response_model=None)
def seal_form(request: Request, db: DbSession, bg: BreakglassDep, csrf_token: Csrf) -> Response:
    """Seal now: end every window at once."""
    web_session = admin_session(request, db, csrf_token)
    bg.seal(db, admin=web_session.user, client=client_of(request))
    return RedirectResponse("/breakglass", status_code=303)


def _tokens(
    request: Request,
    web_session: WebSession,
    window: BreakglassWindow,
    handovers: list[Handover],
) -> Response:
    tokens: list[dict[str, Any]] = [
        {
            "engineer": h.engineer,
            "identity": h.identity_name,
            "jwt": h.token.jwt,
            "expires_at": h.token.expires_at,
            "qr_svg": qr_svg(h.token.jwt),
            "shell_secret": h.shell_secret,
        }
        for h in handovers
    ]
    return render_for(
        request,
        "breakglass_tokens.html",
        web_session,
        201,
        window=window,
        tokens=tokens,
    )


def _names(text: str) -> list[str]:
    return [n for n in text.replace(",", " ").split() if n]


def _start(text: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BreakglassError(
            f"start {text!r}: expected a date and time such as 2026-11-23T09:00 (UTC)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
