"""What every page module shares: templates, the logged-in session, CSRF, error wording.

A session whose account still has its one-time password is refused everywhere but the
password form and logging out (:class:`PasswordChangeRequiredError`; the app answers a
page request with a redirect to the form).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from appliance.admin.controller_status import ControllerStatus, ControllerWatch
from appliance.admin.deps import (
    COOKIE,
    DbSession,
    ForbiddenError,
    NotAuthenticatedError,
    require_password_changed,
)
from appliance.admin.http_errors import status_of
from appliance.admin.services.accounts import resolve_session
from appliance.db.models import Role, WebSession
from appliance.errors import ApplianceError

__all__ = [
    "admin_session",
    "check_csrf",
    "controller_status",
    "logged_in",
    "message_of",
    "own_session",
    "render",
    "render_for",
    "session_of",
    "status_of",
    "templates",
]

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def own_session(request: Request, db: DbSession) -> WebSession | None:
    """The logged-in session of this request, if any, even one that must change its
    password first: for the password form and logging out only."""
    return resolve_session(db, request.cookies.get(COOKIE))


def session_of(request: Request, db: DbSession) -> WebSession | None:
    """The logged-in session of this request, if any; refused while the account still has
    its one-time password (the app then shows the password form)."""
    web_session = own_session(request, db)
    if web_session is not None:
        require_password_changed(web_session.user)
    return web_session


def logged_in(request: Request, db: DbSession) -> WebSession:
    """The logged-in session of this request; without one the app redirects to /login."""
    web_session = session_of(request, db)
    if web_session is None:
        raise NotAuthenticatedError("not logged in, or the session expired: log in again")
    return web_session


def check_csrf(web_session: WebSession, token: str) -> None:
    """Refuse a form that does not carry this session's CSRF token."""
    if not hmac.compare_digest(token, web_session.csrf_token):
        raise ForbiddenError("missing or wrong CSRF token for this session")


def admin_session(request: Request, db: DbSession, csrf_token: str) -> WebSession:
    """The session of a logged-in admin whose form carried its CSRF token, or an error."""
    web_session = logged_in(request, db)
    check_csrf(web_session, csrf_token)
    if web_session.user.role != Role.admin:
        raise ForbiddenError(
            f"{web_session.user.username} is an auditor: only admins may change things"
        )
    return web_session


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A template as a page."""
    return templates.TemplateResponse(request, name, context, status_code=status)


def render_for(
    request: Request, name: str, web_session: WebSession, status: int = 200, **context: Any
) -> HTMLResponse:
    """A template as a page for a logged-in session: its user, CSRF token and role added."""
    context.setdefault("error", None)
    return render(
        request,
        name,
        status,
        user=web_session.user,
        csrf=web_session.csrf_token,
        admin=web_session.user.role == Role.admin,
        **context,
    )


def controller_status(request: Request) -> ControllerStatus:
    """The controller's status for a page (a recent probe's answer, or a short probe)."""
    watch: ControllerWatch = request.app.state.controller_watch
    return watch.status()


def message_of(exc: ApplianceError) -> str:
    """What a page says about ``exc``."""
    return f"{exc} — {exc.hint}" if exc.hint else str(exc)
