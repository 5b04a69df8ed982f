"""Server-rendered pages for people: identities and model access (the dashboard).

The same services as the JSON API, no JavaScript; forms carry the session's CSRF token in
a hidden field. The dashboard says up front whether the controller is reachable,
unreachable or not installed on this site. Login, logout and the password form are in
``account_pages``, the audit log's page in ``audit_pages``, an identity's keys (and the
dashboard's *New key*) in ``key_pages``; what they share in ``common``.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from appliance.admin.controller import controller_for
from appliance.admin.deps import DbSession, RowId, Settings, client_of, reads_only
from appliance.admin.services import grants
from appliance.admin.services import identities as service
from appliance.admin.services.qr import qr_svg
from appliance.admin.web.common import (
    admin_session,
    controller_status,
    logged_in,
    message_of,
    render_for,
    status_of,
)
from appliance.db.models import Identity, IdentityKind, ModelGrant, WebSession
from appliance.errors import ApplianceError

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


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
    return render_for(
        request,
        "dashboard.html",
        web_session,
        status,
        error=error,
        identities=db.scalars(select(Identity).order_by(Identity.name)).all(),
        grants=db.scalars(select(ModelGrant).order_by(ModelGrant.id)).all(),
        kinds=[k.value for k in IdentityKind if k != IdentityKind.router],
        default_minutes=settings.enrollment_minutes_default,
        controller=controller_status(request),
    )


@router.get("/", response_model=None)
@reads_only
def dashboard(request: Request, db: DbSession, settings: Settings) -> Response:
    """Identities and model access, with forms for admins."""
    web_session = logged_in(request, db)
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
    return render_for(
        request,
        "secret.html",
        web_session,
        201,
        heading=f"Enrollment token for {name}",
        explanation=f"Hand this one-time token to the holder of {name}; it expires "
        f"{created.token.expires_at:%Y-%m-%d %H:%M} UTC.",
        secret=jwt,
        secret_b64=base64.b64encode(jwt.encode()).decode(),
        filename=f"{name}.jwt",
        qr_svg=qr_svg(jwt),
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
    """Grant a model; it is in force for the subject's keys at once."""
    web_session = admin_session(request, db, csrf_token)
    try:
        grants.grant_model(
            db,
            controller_for(request),
            subject=subject.strip(),
            model_service=model_service.strip(),
            actor=web_session.user.username,
            client=client_of(request),
            gateway=grants.site_gateway(settings),
        )
    except ApplianceError as exc:
        return _dashboard(
            request, db, settings, web_session, error=message_of(exc), status=status_of(exc)
        )
    return RedirectResponse("/", status_code=303)


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
        grants.revoke_grant(
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
