"""/api/v1/routing: the site's llm-gateway routing (``model: auto``); admins change it,
admins and auditors read it.

``GET`` answers the routing in force (``routing`` null: off) with when and by whom it was
set; ``PUT`` replaces it with the whole document in the body; ``DELETE`` turns routing
off. Setting what is already in force changes nothing (``changed: false``) and records
nothing. The gateway hosts receive it inside the access policy within seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from appliance.admin.deps import (
    CurrentAdmin,
    CurrentReader,
    DbSession,
    Settings,
    client_of,
    reads_only,
)
from appliance.admin.services import routing as routing_service

__all__ = ["router"]

router = APIRouter(prefix="/routing", tags=["routing"])


class RoutingOut(BaseModel):
    """The routing in force: its normalized document (null: routing off), when and by
    whom it was last changed (null: never)."""

    routing: dict[str, Any] | None
    changed_at: datetime | None
    changed_by: str | None

    @classmethod
    def of(cls, found: routing_service.Routing) -> RoutingOut:
        """From the service's answer."""
        return cls(routing=found.document, changed_at=found.changed_at, changed_by=found.changed_by)


class RoutingChangeOut(RoutingOut):
    """The routing after a change, whether anything changed, and that in words."""

    changed: bool
    message: str


@router.get("", response_model=RoutingOut)
@reads_only
def get_routing(_: CurrentReader, db: DbSession) -> RoutingOut:
    """The routing in force."""
    return RoutingOut.of(routing_service.current_routing(db))


@router.put("", response_model=RoutingChangeOut)
def set_routing(
    body: routing_service.RoutingDocument,
    admin: CurrentAdmin,
    db: DbSession,
    settings: Settings,
    request: Request,
) -> RoutingChangeOut:
    """Replace the routing with ``body`` (audited as ``routing.changed``)."""
    found, changed = routing_service.set_routing(
        db, body, actor=admin.username, client=client_of(request), settings=settings
    )
    message = (
        "routing changed: in force at the gateway hosts within seconds"
        if changed
        else "no change: this routing is already in force (nothing was recorded)"
    )
    return RoutingChangeOut(**RoutingOut.of(found).model_dump(), changed=changed, message=message)


@router.delete("", response_model=RoutingChangeOut)
def disable_routing(admin: CurrentAdmin, db: DbSession, request: Request) -> RoutingChangeOut:
    """Turn routing off (audited as ``routing.disabled``)."""
    found, changed = routing_service.disable_routing(
        db, actor=admin.username, client=client_of(request)
    )
    message = (
        "routing turned off: in force at the gateway hosts within seconds"
        if changed
        else "no change: routing was already off (nothing was recorded)"
    )
    return RoutingChangeOut(**RoutingOut.of(found).model_dump(), changed=changed, message=message)
