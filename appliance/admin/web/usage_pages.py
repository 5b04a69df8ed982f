"""The usage page for admins and auditors: a filter, a chart drawn on the server, a table
per identity, model and day, and a link to the same rows as CSV (``/api/v1/usage.csv``)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from appliance.admin.deps import DbSession, Settings, reads_only
from appliance.admin.services.usage import query_usage
from appliance.admin.web.common import logged_in, render_for
from appliance.admin.web.usage_chart import lay_out

__all__ = ["DEFAULT_DAYS", "router"]

router = APIRouter(include_in_schema=False)
#: Without ``since``, the page shows this many days up to ``until``.
DEFAULT_DAYS = 30


@router.get("/usage", response_model=None)
@reads_only
def usage_page(
    request: Request,
    db: DbSession,
    settings: Settings,
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
    identity: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """Usage per identity, model and day, with a chart of tokens per day."""
    web_session = logged_in(request, db)
    until = until or datetime.now(ZoneInfo(settings.site_timezone)).date()
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    who = identity.strip() if identity and identity.strip() else None
    rows = query_usage(db, since=since, until=until, identity=who)
    query = {"since": since.isoformat(), "until": until.isoformat()}
    if who is not None:
        query["identity"] = who
    return render_for(
        request,
        "usage.html",
        web_session,
        since=since.isoformat(),
        until=until.isoformat(),
        identity=who,
        timezone=settings.site_timezone,
        rows=rows,
        chart=lay_out(rows),
        csv_link=f"/api/v1/usage.csv?{urlencode(query)}",
        totals={
            "requests": sum(r.requests for r in rows),
            "prompt_tokens": sum(r.prompt_tokens for r in rows),
            "completion_tokens": sum(r.completion_tokens for r in rows),
            "errors": sum(r.errors for r in rows),
            "refused": sum(sum(r.refused.values()) for r in rows),
        },
    )
