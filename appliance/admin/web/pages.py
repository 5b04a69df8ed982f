"""Server-rendered pages for people: the same services as the JSON API, no JavaScript.

Forms carry the session's CSRF token in a hidden field; the login form uses a
double-submit token (a cookie and a field that must match), since no session exists yet.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from appliance.admin.audit_watch import AuditStatus
from appliance.admin.controller import controller_for
from appliance.admin.deps import (
    COOKIE,
    DbSession,
    ForbiddenError,
    NotAuthenticatedError,
    RowId,
    Settings,
    client_of,
)
from appliance.admin.services import identities as service
from appliance.admin.services.accounts import (
    AuthFailedError,
    ThrottledError,
    authenticate,
    end_session,
    resolve_session,
)
from appliance.admin.services.audit_exports import export_archive
from appliance.audit.record import record_event
from appliance.db.models import (
    AuditEvent,
    Identity,
    IdentityKind,
    ModelGrant,
    Role,
    WebSession,
    utcnow,
)
from appliance.errors import ApplianceError

__all__ = ["admin_session", "message_of", "render", "router", "session_of", "status_of"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
LOGIN_CSRF = "appliance_login_csrf"


def session_of(request: Request, db: DbSession) -> WebSession | None:
    """The logged-in session of this request, if any."""
    return resolve_session(db, request.cookies.get(COOKIE))


def _check_csrf(web_session: WebSession, token: str) -> None:
    if not hmac.compare_digest(token, web_session.csrf_token):
        raise ForbiddenError("missing or wrong CSRF token for this session")


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A template as a page."""
    return templates.TemplateResponse(request, name, context, status_code=status)


def _dashboard(
    request: Request,
    db: DbSession,
    settings: Settings,
    web_session: WebSession,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    watch = getattr(request.app.state, "audit_watch", None)
    if error is None and watch is not None and watch.status.ok is False:
        error = f"AUDIT LOG INTEGRITY CHECK FAILED: {watch.status.message}"
    return render(
        request,
        "dashboard.html",
        status,
        user=web_session.user,
        csrf=web_session.csrf_token,
        admin=web_session.user.role == Role.admin,
        error=error,
        identities=db.scalars(select(Identity).order_by(Identity.name)).all(),
        grants=db.scalars(select(ModelGrant).order_by(ModelGrant.id)).all(),
        kinds=[k.value for k in IdentityKind if k != IdentityKind.router],
        default_minutes=settings.enrollment_minutes_default,
    )


def admin_session(request: Request, db: DbSession, csrf_token: str) -> WebSession:
    """The session of a logged-in admin whose form carried its CSRF token, or an error."""
    web_session = session_of(request, db)
    if web_session is None:
        raise NotAuthenticatedError("not logged in, or the session expired: log in again")
    _check_csrf(web_session, csrf_token)
    if web_session.user.role != Role.admin:
        raise ForbiddenError(
            f"{web_session.user.username} is an auditor: only admins may change things"
        )
    return web_session


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    """The login form."""
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", login_csrf=token, user=None)
    response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", path="/login")
    return response


@router.post("/login", response_model=None)
def login_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=128)],
    totp: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    """Log in from the form; back to the form with the reason on failure."""
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return render(
            request,
            "login.html",
            403,
            login_csrf=expected,
            user=None,
            error="The form expired: load the login page again.",
        )
    try:
        result = authenticate(db, settings, username, password, totp or None, client_of(request))
    except (AuthFailedError, ThrottledError) as exc:
        return render(
            request,
            "login.html",
            429 if isinstance(exc, ThrottledError) else 401,
            login_csrf=expected,
            user=None,
            error=str(exc),
        )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        result.token,
        httponly=True,
        samesite="strict",
        secure=settings.tls,
        max_age=settings.session_minutes * 60,
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF, path="/login")
    return response


@router.post("/logout", response_model=None)
def logout_form(
    request: Request, db: DbSession, csrf_token: Annotated[str, Form(max_length=128)]
) -> Response:
    """End the session and go back to the login form."""
    web_session = session_of(request, db)
    if web_session is not None:
        _check_csrf(web_session, csrf_token)
        end_session(db, web_session, client_of(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/", response_model=None)
def dashboard(request: Request, db: DbSession, settings: Settings) -> Response:
    """Identities and model access, with forms for admins."""
    web_session = session_of(request, db)
    if web_session is None:
        return RedirectResponse("/login", status_code=303)
    return _dashboard(request, db, settings, web_session)


@router.post("/identities", response_model=None)
def create_identity_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Annotated[str, Form(max_length=128)],
    name: Annotated[str, Form(max_length=128)],
    kind: Annotated[IdentityKind, Form()],
    role_attributes: Annotated[str, Form(max_length=2048)] = "",
    enrollment_minutes: Annotated[int | None, Form(ge=5)] = None,
) -> Response:
    """Create an identity; the page shows its enrollment token and QR code once."""
    web_session = admin_session(request, db, csrf_token)
    attributes = [a.strip().lstrip("#") for a in role_attributes.split(",") if a.strip()]
    minutes = min(
        enrollment_minutes or settings.enrollment_minutes_default, settings.enrollment_minutes_max
    )
    try:
        created = service.create_identity(
            db,
            controller_for(request),
            name=name,
            kind=kind,
            role_attributes=attributes,
            enrollment_minutes=minutes,
            actor=web_session.user.username,
            client=client_of(request),
        )
    except ApplianceError as exc:
        return _dashboard(
            request, db, settings, web_session, error=message_of(exc), status=status_of(exc)
        )
    jwt = created.token.jwt
    return render(
        request,
        "secret.html",
        201,
        user=web_session.user,
        csrf=web_session.csrf_token,
        heading=f"Enrollment token for {name}",
        explanation=f"Hand this one-time token to the holder of {name}; it expires "
        f"{created.token.expires_at:%Y-%m-%d %H:%M} UTC.",
        secret=jwt,
        secret_b64=base64.b64encode(jwt.encode()).decode(),
        filename=f"{name}.jwt",
        qr_svg=service.qr_svg(jwt),
    )


@router.post("/identities/{identity_id}/{action}", response_model=None)
def identity_action(
    identity_id: RowId,
    action: str,
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Annotated[str, Form(max_length=128)],
) -> Response:
    """Disable, enable or delete an identity from its row's buttons."""
    web_session = admin_session(request, db, csrf_token)
    row = db.get(Identity, identity_id)
    try:
        if row is None or action not in ("disable", "enable", "delete"):
            raise service.IdentityError(
                f"no identity with id {identity_id}, or no action {action!r}"
            )
        controller = controller_for(request)
        actor, client = web_session.user.username, client_of(request)
        if action == "delete":
            service.delete_identity(db, controller, row, actor=actor, client=client)
        else:
            service.set_disabled(
                db, controller, row, action == "disable", actor=actor, client=client
            )
    except ApplianceError as exc:
        return _dashboard(
            request, db, settings, web_session, error=message_of(exc), status=status_of(exc)
        )
    return RedirectResponse("/", status_code=303)


@router.post("/grants", response_model=None)
def grant_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Annotated[str, Form(max_length=128)],
    subject: Annotated[str, Form(max_length=130)],
    model_service: Annotated[str, Form(max_length=128)],
) -> Response:
    """Grant a model; the page shows the gateway API key once."""
    web_session = admin_session(request, db, csrf_token)
    try:
        made = service.grant_model(
            db,
            controller_for(request),
            subject=subject.strip(),
            model_service=model_service.strip(),
            actor=web_session.user.username,
            client=client_of(request),
        )
    except ApplianceError as exc:
        return _dashboard(
            request, db, settings, web_session, error=message_of(exc), status=status_of(exc)
        )
    return render(
        request,
        "secret.html",
        201,
        user=web_session.user,
        csrf=web_session.csrf_token,
        heading=f"Gateway API key for {subject}",
        explanation=f"This key lets {subject} call the model {model_service} through "
        "the llm-gateway.",
        secret=made.api_key,
        secret_b64="",
        filename=None,
        qr_svg=None,
    )


@router.post("/grants/{grant_id}/revoke", response_model=None)
def revoke_form(
    grant_id: RowId,
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Annotated[str, Form(max_length=128)],
) -> Response:
    """Revoke a grant."""
    web_session = admin_session(request, db, csrf_token)
    grant = db.get(ModelGrant, grant_id)
    try:
        if grant is None:
            raise service.IdentityError(f"no grant with id {grant_id}")
        service.revoke_grant(
            db,
            controller_for(request),
            grant,
            actor=web_session.user.username,
            client=client_of(request),
        )
    except ApplianceError as exc:
        return _dashboard(
            request, db, settings, web_session, error=message_of(exc), status=status_of(exc)
        )
    return RedirectResponse("/", status_code=303)


def message_of(exc: ApplianceError) -> str:
    """What a page says about ``exc``."""
    return f"{exc} — {exc.hint}" if exc.hint else str(exc)


def status_of(exc: ApplianceError) -> int:
    """The HTTP status the app gives ``exc``."""
    from appliance.admin.app import status_of as app_status_of

    return app_status_of(exc)


@router.get("/audit", response_model=None)
def audit_page(
    request: Request,
    db: DbSession,
    action: str | None = None,
    actor: str | None = None,
) -> Response:
    """Browse and filter the log; auditors also get the export form."""
    web_session = session_of(request, db)
    if web_session is None:
        return RedirectResponse("/login", status_code=303)
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
    watch = getattr(request.app.state, "audit_watch", None)
    today = utcnow().date()
    return render(
        request,
        "audit.html",
        user=web_session.user,
        csrf=web_session.csrf_token,
        auditor=web_session.user.role == Role.auditor,
        records=found,
        filters={"action": action, "actor": actor},
        integrity=watch.status if watch is not None else AuditStatus(),
        since=(today.replace(day=1)).isoformat(),
        until=today.isoformat(),
    )


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
    web_session = session_of(request, db)
    if web_session is None:
        raise NotAuthenticatedError("not logged in, or the session expired: log in again")
    _check_csrf(web_session, csrf_token)
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
