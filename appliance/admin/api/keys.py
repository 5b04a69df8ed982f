"""/api/v1 keys, limits and usage for people: admins change, admins and auditors read.

Keys: ``/identities/{id}/keys`` (list, make), ``/keys/{id}/rotate``, ``DELETE /keys/{id}``;
a key is in the answer that made it, never again. Limits: ``/limits`` (list, create or
replace by subject), ``DELETE /limits/{id}``. Usage: ``/usage`` and ``/usage.csv``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from appliance.admin.api._rows import from_row
from appliance.admin.deps import (
    CurrentAdmin,
    CurrentReader,
    DbSession,
    RowId,
    client_of,
    reads_only,
)
from appliance.admin.services import api_keys, limits, usage
from appliance.admin.services.access_errors import AccessNotFoundError
from appliance.db.models import AccessLimit, ApiKey

__all__ = ["router"]

router = APIRouter()
_Count = Annotated[int | None, Field(ge=1, le=2**53)]


class KeyOut(BaseModel):
    """A key as lists show it: never the key itself."""

    id: int
    identity: str
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        """From the table row."""
        return from_row(cls, row, identity=row.identity.name)


class NewKeyOut(KeyOut):
    """A key just made, with the key itself: shown once, stored only as its SHA-256."""

    api_key: str


class KeyIn(BaseModel):
    """A new key; without ``expires_at`` it lives until revoked."""

    expires_at: datetime | None = None


class RotateIn(BaseModel):
    """How long the old key keeps working beside the new one."""

    overlap_minutes: int = Field(60, ge=0, le=api_keys.MAX_OVERLAP_MINUTES)


class LimitIn(BaseModel):
    """The limits of ``@identity`` or ``#group``; null (or left out): no limit of that kind."""

    subject: str = Field(min_length=2, max_length=130)
    tokens_per_day: _Count = None
    tokens_per_week: _Count = None
    tokens_per_month: _Count = None
    requests_per_minute: _Count = None
    concurrent_requests: _Count = None


class LimitOut(LimitIn):
    """A limit row."""

    id: int
    updated_by: str
    updated_at: datetime

    @classmethod
    def of(cls, row: AccessLimit) -> LimitOut:
        """From the table row."""
        return from_row(cls, row, **limits.limit_values(row))


def _new(made: api_keys.NewKey) -> NewKeyOut:
    return NewKeyOut(**KeyOut.of(made.row).model_dump(), api_key=made.api_key)


@router.get("/identities/{identity_id}/keys", response_model=list[KeyOut], tags=["keys"])
@reads_only
def list_keys(identity_id: RowId, _: CurrentReader, db: DbSession) -> list[KeyOut]:
    """Every key of an identity, revoked ones included (never the keys themselves)."""
    return [KeyOut.of(k) for k in api_keys.list_keys(db, api_keys.identity_by_id(db, identity_id))]


@router.post(
    "/identities/{identity_id}/keys", response_model=NewKeyOut, status_code=201, tags=["keys"]
)
def create_key(
    identity_id: RowId, body: KeyIn, admin: CurrentAdmin, db: DbSession, request: Request
) -> NewKeyOut:
    """A new key for the identity: shown in this answer only."""
    made = api_keys.create_key(
        db,
        api_keys.identity_by_id(db, identity_id),
        expires_at=body.expires_at,
        actor=admin.username,
        client=client_of(request),
    )
    return _new(made)


@router.post("/keys/{key_id}/rotate", response_model=NewKeyOut, status_code=201, tags=["keys"])
def rotate_key(
    key_id: RowId, body: RotateIn, admin: CurrentAdmin, db: DbSession, request: Request
) -> NewKeyOut:
    """A new key in place of this one, which keeps working for ``overlap_minutes``."""
    made = api_keys.rotate_key(
        db,
        api_keys.key_by_id(db, key_id),
        overlap_minutes=body.overlap_minutes,
        actor=admin.username,
        client=client_of(request),
    )
    return _new(made)


@router.delete("/keys/{key_id}", status_code=204, tags=["keys"])
def revoke_key(key_id: RowId, admin: CurrentAdmin, db: DbSession, request: Request) -> Response:
    """Revoke a key: refused at the gateways once they fetch the policy (within seconds)."""
    api_keys.revoke_key(
        db, api_keys.key_by_id(db, key_id), actor=admin.username, client=client_of(request)
    )
    return Response(status_code=204)


@router.get("/limits", response_model=list[LimitOut], tags=["limits"])
@reads_only
def list_limits(_: CurrentReader, db: DbSession) -> list[LimitOut]:
    """Every identity's and group's limits."""
    return [LimitOut.of(row) for row in limits.list_limits(db)]


@router.put("/limits", response_model=LimitOut, tags=["limits"])
def set_limit(body: LimitIn, admin: CurrentAdmin, db: DbSession, request: Request) -> LimitOut:
    """Create or replace the limits of ``subject``."""
    row = limits.set_limit(
        db,
        body.subject,
        body.model_dump(exclude={"subject"}),
        actor=admin.username,
        client=client_of(request),
    )
    return LimitOut.of(row)


@router.delete("/limits/{limit_id}", status_code=204, tags=["limits"])
def delete_limit(limit_id: RowId, admin: CurrentAdmin, db: DbSession, request: Request) -> Response:
    """Remove a subject's limits."""
    row = db.get(AccessLimit, limit_id)
    if row is None:
        raise AccessNotFoundError(f"no limit with id {limit_id}")
    limits.delete_limit(db, row, actor=admin.username, client=client_of(request))
    return Response(status_code=204)


_Since = Annotated[date | None, Query(description="first day, YYYY-MM-DD (site timezone)")]
_Until = Annotated[date | None, Query(description="last day, YYYY-MM-DD, included")]
_Who = Annotated[str | None, Query(max_length=128, description="one identity's name")]


@router.get("/usage", response_model=list[usage.UsageSum], tags=["usage"])
@reads_only
def get_usage(
    _: CurrentReader,
    db: DbSession,
    since: _Since = None,
    until: _Until = None,
    identity: _Who = None,
) -> list[usage.UsageSum]:
    """Usage per identity, model and day, summed over gateway hosts."""
    return usage.query_usage(db, since=since, until=until, identity=identity)


@router.get(
    "/usage.csv",
    tags=["usage"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "the rows as CSV"}},
)
@reads_only
def get_usage_csv(
    _: CurrentReader,
    db: DbSession,
    since: _Since = None,
    until: _Until = None,
    identity: _Who = None,
) -> Response:
    """The same rows as /usage, as CSV (one column per refusal kind)."""
    rows = usage.query_usage(db, since=since, until=until, identity=identity)
    return Response(
        usage.usage_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
    )
