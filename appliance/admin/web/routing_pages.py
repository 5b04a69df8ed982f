"""The routing page: the site's llm-gateway routing (``model: auto``) and its history;
admins change it.

Each form builds the whole new routing document from the one in force and hands it to
the same service as ``PUT /api/v1/routing``, so the rules and the audit records
(``routing.changed``, ``routing.disabled``) are the API's. Adding a route whose name is
taken replaces that route where it stands (routes are tried in their order).

Examples need semantic matching and semantic matching needs examples, so that neither
form waits on the other: the route form also sets semantic matching up when it is off
and the route brings the first examples, and removing the last examples (replacing or
deleting their route) turns it off, saying so.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from appliance.admin.deps import DbSession, Settings, client_of, reads_only
from appliance.admin.services import routing
from appliance.admin.web.common import (
    admin_session,
    logged_in,
    message_of,
    render_for,
    status_of,
)
from appliance.db.models import WebSession
from appliance.errors import ApplianceError

__all__ = ["HISTORY", "router", "split_lines", "split_terms"]

router = APIRouter(include_in_schema=False)
#: How many changes the page lists, newest first.
HISTORY = 20
Csrf = Annotated[str, Form(max_length=128)]
# Longer than any valid value, so that an odd one reaches the service's own message
# rather than the form parser's.
_Short = Annotated[str, Form(max_length=1024)]
_Long = Annotated[str, Form(max_length=routing.MAX_EXAMPLES * (routing.MAX_EXAMPLE + 2) + 1024)]
_Terms = Annotated[str, Form(max_length=routing.MAX_TERMS * (routing.MAX_TERM + 2) + 1024)]
_RouteName = Annotated[str, Path(max_length=63)]


def split_terms(text: str) -> list[str]:
    """Comma-separated keywords as a list (empty pieces dropped; the service strips and
    checks each)."""
    return [piece for piece in text.split(",") if piece.strip()]


def split_lines(text: str) -> list[str]:
    """One example a line, as a list (empty lines dropped)."""
    return [line for line in text.splitlines() if line.strip()]


def _page(
    request: Request,
    db: DbSession,
    settings: Settings,
    web_session: WebSession,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    found = routing.current_routing(db)
    return render_for(
        request,
        "routing.html",
        web_session,
        status,
        error=error,
        notice=notice,
        current=found,
        document=found.document,
        history=[(row, routing.summary(row.document)) for row in routing.routing_history(db)],
        models=list(settings.gateway_models),
        form=form or {},
        max_terms=routing.MAX_TERMS,
        max_examples=routing.MAX_EXAMPLES,
    )


class _NotFoundError(routing.RoutingError):
    http_status = 404


def _semantic(model: str, threshold: str) -> dict[str, Any] | None:
    """Semantic matching from two form fields; an empty model is none."""
    if not model.strip():
        return None
    try:
        value = float(threshold.strip())
    except ValueError:
        raise routing.RoutingError(
            "semantic threshold: expected a number above 0 and at most 1 (0.75, say), "
            f"found {threshold!r}"
        ) from None
    return {"model": model.strip(), "threshold": value}


def _without_idle_semantic(document: dict[str, Any]) -> str | None:
    """Semantic matching turned off when no route has examples left (it would compare
    with nothing, which the service refuses); what the page says about it."""
    if document.get("semantic") and not any(r["examples"] for r in document["routes"]):
        document["semantic"] = None
        return "Semantic matching is off now: no route has examples left."
    return None


def _change(
    request: Request,
    db: DbSession,
    settings: Settings,
    web_session: WebSession,
    build: Callable[[dict[str, Any] | None], tuple[dict[str, Any], str | None]],
    form: dict[str, str] | None = None,
) -> Response:
    """Put the document ``build`` makes of the one in force (with what to tell, if
    anything) in force: back to the page, or the page with what went wrong."""
    try:
        document, notice = build(routing.current_routing(db).document)
        _, changed = routing.set_routing(
            db,
            document,
            actor=web_session.user.username,
            client=client_of(request),
            settings=settings,
        )
    except ApplianceError as exc:
        return _page(
            request,
            db,
            settings,
            web_session,
            form=form,
            error=message_of(exc),
            status=status_of(exc),
        )
    if not changed:
        notice = "Nothing changed: this routing is already in force."
    if notice is not None:
        return _page(request, db, settings, web_session, notice=notice)
    return RedirectResponse("/routing", status_code=303)


@router.get("/routing", response_model=None)
@reads_only
def routing_page(request: Request, db: DbSession, settings: Settings) -> Response:
    """The routing in force and its last changes; admins also change it."""
    web_session = logged_in(request, db)
    return _page(request, db, settings, web_session)


@router.post("/routing/settings", response_model=None)
def routing_settings_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Csrf,
    default_route: _Short,
    allow_explicit_model: _Short = "",
    semantic_model: _Short = "",
    semantic_threshold: _Short = "",
) -> Response:
    """The routing's settings: explicit model names, the default route, semantic matching
    (an empty model: none)."""
    web_session = admin_session(request, db, csrf_token)
    form = {
        "default_route": default_route,
        "semantic_model": semantic_model,
        "semantic_threshold": semantic_threshold,
    }

    def build(current: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
        if current is None:
            raise routing.RoutingError("routing is off: add a route first")
        document = copy.deepcopy(current)
        document["allow_explicit_model"] = bool(allow_explicit_model)
        document["default_route"] = default_route.strip()
        document["semantic"] = _semantic(semantic_model, semantic_threshold)
        return document, None

    return _change(request, db, settings, web_session, build, form)


@router.post("/routing/routes", response_model=None)
def add_route_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Csrf,
    name: _Short,
    model: _Short,
    keywords: _Terms = "",
    exclude: _Terms = "",
    examples: _Long = "",
    description: _Long = "",
    semantic_model: _Short = "",
    semantic_threshold: _Short = "",
) -> Response:
    """Add a route at the end, or replace the route of that name where it stands. The
    first route of a site turns routing on, with itself as the default route. While
    semantic matching is off, ``semantic_model`` and ``semantic_threshold`` turn it on
    for a route with examples (examples need it, and it needs examples)."""
    web_session = admin_session(request, db, csrf_token)
    form = {
        "name": name,
        "model": model,
        "keywords": keywords,
        "exclude": exclude,
        "examples": examples,
        "description": description,
        "route_semantic_model": semantic_model,
        "route_semantic_threshold": semantic_threshold,
    }
    route = {
        "name": name.strip(),
        "model": model.strip(),
        "description": description,
        "keywords": split_terms(keywords),
        "exclude": split_terms(exclude),
        "examples": split_lines(examples),
    }

    def build(current: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
        if current is None:
            document: dict[str, Any] = {
                "allow_explicit_model": False,
                "default_route": route["name"],
                "routes": [route],
                "semantic": None,
            }
        else:
            document = copy.deepcopy(current)
            names = [r["name"] for r in document["routes"]]
            if route["name"] in names:
                document["routes"][names.index(route["name"])] = route
            else:
                document["routes"].append(route)
        if document["semantic"] is None and route["examples"]:
            document["semantic"] = _semantic(semantic_model, semantic_threshold)
        return document, _without_idle_semantic(document)

    return _change(request, db, settings, web_session, build, form)


@router.post("/routing/routes/{name}/delete", response_model=None)
def delete_route_form(
    name: _RouteName,
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Csrf,
) -> Response:
    """Remove a route (never the default route, nor the last one: turn routing off)."""
    web_session = admin_session(request, db, csrf_token)

    def build(current: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
        names = [r["name"] for r in current["routes"]] if current is not None else []
        if current is None or name not in names:
            raise _NotFoundError(f"no route named {name!r}: deleted already?")
        if len(names) == 1:
            raise routing.RoutingError(
                f"route {name!r} is the only route: turn routing off instead"
            )
        if current["default_route"] == name:
            raise routing.RoutingError(
                f"route {name!r} is the default route: choose another default route first"
            )
        document = copy.deepcopy(current)
        document["routes"] = [r for r in document["routes"] if r["name"] != name]
        return document, _without_idle_semantic(document)

    return _change(request, db, settings, web_session, build)


@router.post("/routing/off", response_model=None)
def routing_off_form(
    request: Request,
    db: DbSession,
    settings: Settings,
    csrf_token: Csrf,
) -> Response:
    """Turn routing off."""
    web_session = admin_session(request, db, csrf_token)
    _, changed = routing.disable_routing(
        db, actor=web_session.user.username, client=client_of(request)
    )
    if not changed:
        return _page(request, db, settings, web_session, notice="Routing was already off.")
    return RedirectResponse("/routing", status_code=303)
