"""/api/v1/controller/status: is this site's OpenZiti controller reachable, unreachable
(since when, what was tried), or not installed at all?"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from appliance.admin.api._rows import from_row
from appliance.admin.controller_status import ControllerState, ControllerStatus, ControllerWatch
from appliance.admin.deps import CurrentReader

__all__ = ["router"]

router = APIRouter()


class ControllerStatusOut(BaseModel):
    """What the last probe of the controller found (reused for a few seconds).

    ``since``: when it was first found unreachable in this outage; ``tried``: the request
    made; ``detail``: the version it answered, or why it did not.
    """

    state: ControllerState
    url: str | None
    checked_at: datetime
    since: datetime | None
    tried: str | None
    detail: str
    version: str | None
    summary: str

    @classmethod
    def of(cls, status: ControllerStatus) -> ControllerStatusOut:
        """From the probe's answer."""
        return from_row(cls, status, summary=status.summary())


@router.get("/controller/status", response_model=ControllerStatusOut, tags=["controller"])
def controller_status(_: CurrentReader, request: Request) -> ControllerStatusOut:
    """Whether the controller answers its unauthenticated version request right now."""
    watch: ControllerWatch = request.app.state.controller_watch
    return ControllerStatusOut.of(watch.status())
