"""An identity's model-access keys as a page: list, make, rotate, revoke (no JavaScript).

The same service functions as ``/api/v1/identities/{id}/keys`` and ``/api/v1/keys/…``, so
the checks and the audit records are the API's. A key just made is shown once, on the
secret page, as the dashboard shows enrollment tokens; never again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from appliance.admin.deps import DbSession, RowId, Settings, client_of, reads_only
from appliance.admin.services import api_keys
from appliance.admin.services.access_errors import AccessError
from appliance.admin.web.common import (
    admin_session,
    logged_in,
    message_of,
    render_for,
    status_of,
)
from appliance.db.models import ApiKey, Identity, WebSession, utcnow
from appliance.errors import ApplianceError

__all__ = ["DEFAULT_OVERLAP_MINUTES", "keys_link", "router"]

router = APIRouter(include_in_schema=False)
Csrf = Annotated[str, Form(max_length=128)]
#: What the rotate form offers: the old key keeps working this long beside the new one.
DEFAULT_OVERLAP_MINUTES = 60


def keys_link(identity_id: int) -> str:
    """The page of an identity's keys."""
    return f"/identities/{identity_id}/keys"


def _state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "live"


def _page(
    request: Request,
    db: DbSession,
    settings: Settings,
    web_session: WebSession,
    identity: Identity,
    error: str | None = None,
    status: int = 200,
) -> Response:
    now = utcnow()
    return render_for(
        request,
        "keys.html",
        web_session,
        status,
        error=error,
        identity=identity,
        keys=[(key, _state(key, now)) for key in api_keys.list_keys(db, identity)],
        overlap_minutes=DEFAULT_OVERLAP_MINUTES,
        max_overlap_minutes=api_keys.MAX_OVERLAP_MINUTES,
        timezone=settings.site_timezone,
    )


def _shown_once(
    request: Request, web_session: WebSession, made: api_keys.NewKey, explanation: str
) -> Response:
    identity = made.row.identity
    return render_for(
        request,
        "secret.html",
        web_session,
        201,
        heading=f"API key for {identity.name}",
        explanation=explanation,
        secret=made.api_key,
        secret_b64="",
        filename=None,
        qr_svg=None,
        back=keys_link(identity.id),
    )


def _whole_number(name: str, value: str, default: int) -> int:
    text = value.strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise AccessError(f"{name}: expected a whole number, found {value!r}") from None


def _expiry(value: str, timezone: str) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AccessError(
            f"expires: expected a date and time such as 2027-01-31T18:00 (or nothing: "
            f"the key lives until revoked), found {value!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=ZoneInfo(timezone))


@router.get("/identities/{identity_id}/keys", response_model=None)
@reads_only
def keys_page(identity_id: RowId, request: Request, db: DbSession, settings: Settings) -> Response:
    """Every key of an identity (never the keys themselves); admins also make, rotate and
    revoke them here."""
    web_session = logged_in(request, db)
    return _page(request, db, settings, web_session, api_keys.identity_by_id(db, identity_id))


@router.post("/keys", response_model=None)
def create_key_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Csrf,
    identity_id: Annotated[int, Form(ge=1, le=2_147_483_647)],
    expires: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Make a model-access key for an identity (the dashboard's and the keys page's
    *New key*); the answer shows it once."""
    web_session = admin_session(request, db, csrf_token)
    identity = api_keys.identity_by_id(db, identity_id)
    try:
        made = api_keys.create_key(
            db,
            identity,
            expires_at=_expiry(expires, settings.site_timezone),
            actor=web_session.user.username,
            client=client_of(request),
        )
    except ApplianceError as exc:
        return _page(request, db, settings, web_session, identity, message_of(exc), status_of(exc))
    until = (
        f"until {made.row.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC (or until it is revoked)"
        if made.row.expires_at
        else "until it is revoked"
    )
    return _shown_once(
        request,
        web_session,
        made,
        f"This key lets {identity.name} call the models granted to it (or to its groups) "
        f"through the llm-gateway, within seconds and {until}.",
    )


@router.post("/keys/{key_id}/rotate", response_model=None)
def rotate_key_form(
    key_id: RowId,
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Csrf,
    overlap_minutes: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """A new key in place of this one; the old one keeps working for the overlap."""
    web_session = admin_session(request, db, csrf_token)
    key = api_keys.key_by_id(db, key_id)
    try:
        minutes = _whole_number("overlap_minutes", overlap_minutes, DEFAULT_OVERLAP_MINUTES)
        made = api_keys.rotate_key(
            db,
            key,
            overlap_minutes=minutes,
            actor=web_session.user.username,
            client=client_of(request),
        )
    except ApplianceError as exc:
        return _page(
            request, db, settings, web_session, key.identity, message_of(exc), status_of(exc)
        )
    old_end = f"{key.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if key.expires_at else "now"
    return _shown_once(
        request,
        web_session,
        made,
        f"This key replaces {key.prefix}…, which keeps working until {old_end} and is "
        f"refused after that; hand the new key to the holder of {key.identity.name} now.",
    )


@router.post("/keys/{key_id}/revoke", response_model=None)
def revoke_key_form(
    key_id: RowId,
    request: Request,
    db: DbSession,
    csrf_token: Csrf,
) -> Response:
    """Revoke a key: refused at the gateways within seconds; the row stays, for the record."""
    web_session = admin_session(request, db, csrf_token)
    key = api_keys.key_by_id(db, key_id)
    api_keys.revoke_key(db, key, actor=web_session.user.username, client=client_of(request))
    return RedirectResponse(keys_link(key.identity_id), status_code=303)
