"""The limits page: every subject's budgets and rates; admins set and delete them.

The same service functions as ``/api/v1/limits``, so the checks and the audit records
(``limit.set``, ``limit.delete``) are the API's. A number field left empty is no limit of
that kind; the form replaces all five limits of the subject, as ``PUT /api/v1/limits`` does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from appliance.admin.deps import DbSession, RowId, Settings, client_of, reads_only
from appliance.admin.services import limits
from appliance.admin.services.access_errors import AccessError, AccessNotFoundError
from appliance.admin.web.common import (
    admin_session,
    logged_in,
    message_of,
    render_for,
    status_of,
)
from appliance.db.models import AccessLimit, WebSession
from appliance.errors import ApplianceError

__all__ = ["LIMIT_LABELS", "router"]

router = APIRouter(include_in_schema=False)
Csrf = Annotated[str, Form(max_length=128)]
#: The form's and the table's words for each limit, in the service's order.
LIMIT_LABELS = {
    "tokens_per_day": "Tokens per day",
    "tokens_per_week": "Tokens per week",
    "tokens_per_month": "Tokens per month",
    "requests_per_minute": "Requests per minute",
    "concurrent_requests": "Concurrent requests",
}
# Longer than any valid value, so that an odd one reaches the page's own message rather
# than the form parser's.
_Field = Annotated[str, Form(max_length=1024)]


def _page(
    request: Request,
    db: DbSession,
    settings: Settings,
    web_session: WebSession,
    form: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    return render_for(
        request,
        "limits.html",
        web_session,
        status,
        error=error,
        rows=[(row, limits.limit_values(row)) for row in limits.list_limits(db)],
        labels=LIMIT_LABELS,
        form=form or {},
        timezone=settings.site_timezone,
    )


def _number(name: str, value: str) -> int | None:
    """A form field as a limit: empty is None (no limit); the range is the service's."""
    text = value.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise AccessError(
            f"{name}: expected a whole number (or nothing: no limit), found {value!r}"
        ) from None


@router.get("/limits", response_model=None)
@reads_only
def limits_page(
    request: Request,
    db: DbSession,
    settings: Settings,
    edit: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
) -> Response:
    """Every subject's limits; admins also set and delete them (``edit``: a row's id, to
    fill the form with its values)."""
    web_session = logged_in(request, db)
    form: dict[str, str] = {}
    row = db.get(AccessLimit, edit) if edit is not None else None
    if row is not None:
        form = {"subject": row.subject}
        form.update({k: "" if v is None else str(v) for k, v in limits.limit_values(row).items()})
    return _page(request, db, settings, web_session, form)


@router.post("/limits", response_model=None)
def set_limit_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Csrf,
    subject: _Field,
    tokens_per_day: _Field = "",
    tokens_per_week: _Field = "",
    tokens_per_month: _Field = "",
    requests_per_minute: _Field = "",
    concurrent_requests: _Field = "",
) -> Response:
    """Create or replace the limits of ``subject``; an empty field is no limit."""
    web_session = admin_session(request, db, csrf_token)
    form = {
        "subject": subject,
        "tokens_per_day": tokens_per_day,
        "tokens_per_week": tokens_per_week,
        "tokens_per_month": tokens_per_month,
        "requests_per_minute": requests_per_minute,
        "concurrent_requests": concurrent_requests,
    }
    try:
        values = {name: _number(name, form[name]) for name in limits.LIMIT_FIELDS}
        limits.set_limit(
            db,
            subject.strip(),
            values,
            actor=web_session.user.username,
            client=client_of(request),
        )
    except ApplianceError as exc:
        return _page(request, db, settings, web_session, form, message_of(exc), status_of(exc))
    return RedirectResponse("/limits", status_code=303)


@router.post("/limits/{limit_id}/delete", response_model=None)
def delete_limit_form(
    limit_id: RowId,
    request: Request,
    db: DbSession,
    csrf_token: Csrf,
) -> Response:
    """Remove a subject's limits (it is then limited by its groups' only)."""
    web_session = admin_session(request, db, csrf_token)
    row = db.get(AccessLimit, limit_id)
    if row is None:
        raise AccessNotFoundError(f"no limit with id {limit_id}: deleted already?")
    limits.delete_limit(db, row, actor=web_session.user.username, client=client_of(request))
    return RedirectResponse("/limits", status_code=303)
