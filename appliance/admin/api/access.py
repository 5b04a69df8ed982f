"""/api/v1/access: the gateway hosts' access proxies fetch the policy and hand over usage.

Machine to machine, through the overlay: a bearer token (the file named by the setting
``access_token_file``, compared by SHA-256 in constant time), no cookie session and so no
CSRF token. Without that setting the routes answer 404. The policy is long-polled: the
answer comes as soon as its version differs from the caller's, else 304 after ``wait``.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from appliance.admin.deps import DbSession, NotAuthenticatedError, Settings, client_of
from appliance.admin.security import hash_token
from appliance.admin.services import usage as usage_service
from appliance.admin.services.access_errors import AccessNotConfiguredError
from appliance.admin.services.access_policy import current_policy
from appliance.admin.settings import AdminSettings

__all__ = ["POLL_SECONDS", "router"]

router = APIRouter(prefix="/access", tags=["access"])
#: How often a waiting long poll looks at the database again.
POLL_SECONDS = 0.5
_BEARER = "bearer "


def _access_caller(request: Request, settings: Settings) -> None:
    """Let through only a caller with the access token; nothing else about it is known."""
    token = settings.access_token()
    if token is None:
        raise AccessNotConfiguredError("access sync is not configured here")
    given = request.headers.get("authorization", "")
    presented = given[len(_BEARER) :].strip() if given.lower().startswith(_BEARER) else ""
    if not presented or not hmac.compare_digest(hash_token(presented), hash_token(token)):
        raise NotAuthenticatedError(
            "missing or wrong access token: expected 'Authorization: Bearer <token>' with the "
            "token the installer made for this site's gateway hosts"
        )


AccessCaller = Annotated[None, Depends(_access_caller)]


class UsageRowIn(BaseModel):
    """Absolute totals of one gateway host for an identity, a model and a day."""

    identity: str = Field(max_length=usage_service.MAX_NAME)
    model: str = Field(max_length=usage_service.MAX_NAME)
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    requests: int = Field(0, ge=0)
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    errors: int = Field(0, ge=0)
    refused: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


class UsageUpload(BaseModel):
    """An upload from one gateway host's access proxy."""

    gateway: str = Field(min_length=1, max_length=usage_service.MAX_NAME)
    rows: list[UsageRowIn] = Field(max_length=usage_service.MAX_ROWS)


class UsageAccepted(BaseModel):
    """How many rows the upload carried (all of them are stored)."""

    accepted: int


@router.get(
    "/policy",
    responses={200: {"description": "the policy and its version"}, 304: {"description": "same"}},
)
def policy(
    _: AccessCaller,
    request: Request,
    settings: Settings,
    version: Annotated[str, Query(max_length=64)] = "",
    wait: Annotated[float, Query(ge=0, le=30)] = 0,
) -> Response:
    """The access policy, at once if its version is not ``version``, else when it changes
    within ``wait`` seconds; still the same then: 304 with no body.

    A sync route: it waits in the thread pool, never on the event loop, and each look is
    a fresh read-only transaction (a long one would keep seeing the same snapshot).
    """
    sessions: sessionmaker[Session] = request.app.state.read_sessions
    deadline = time.monotonic() + wait
    while True:
        found, document = _look(sessions, settings)
        if found != version:
            return JSONResponse({"version": found, "policy": document})
        left = deadline - time.monotonic()
        if left <= 0:
            return Response(status_code=304)
        time.sleep(min(POLL_SECONDS, left))


def _look(sessions: sessionmaker[Session], settings: AdminSettings) -> tuple[str, dict[str, Any]]:
    with sessions() as db:
        return current_policy(db, settings)


@router.post("/usage", response_model=UsageAccepted)
def upload_usage(
    body: UsageUpload, _: AccessCaller, db: DbSession, request: Request
) -> UsageAccepted:
    """Store a gateway host's usage (absolute totals; each counter keeps the larger of
    stored and sent) and audit what changed (``usage.rollup``)."""
    rows = [usage_service.UsageRow(**row.model_dump()) for row in body.rows]
    usage_service.ingest(db, body.gateway, rows, client=client_of(request))
    return UsageAccepted(accepted=len(rows))
