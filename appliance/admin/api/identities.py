"""/api/v1/identities and /api/v1/grants: enrollment into the overlay and model access."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from appliance.admin.api._rows import from_row
from appliance.admin.controller import controller_for
from appliance.admin.deps import (
    CurrentAdmin,
    CurrentReader,
    DbSession,
    RowId,
    Settings,
    client_of,
    reads_only,
)
from appliance.admin.services import grants
from appliance.admin.services import identities as service
from appliance.admin.services.qr import qr_svg
from appliance.db.models import Identity, IdentityKind, ModelGrant
from appliance.ziti import ZitiClient

__all__ = ["router"]

router = APIRouter()
ControllerDep = Annotated[ZitiClient, Depends(controller_for)]


class IdentityIn(BaseModel):
    """A new identity."""

    name: str = Field(min_length=1, max_length=128)
    kind: IdentityKind
    role_attributes: list[str] = Field(default_factory=list, max_length=32)
    enrollment_minutes: int | None = Field(default=None, ge=5)


class IdentityOut(BaseModel):
    """An identity as the API shows it."""

    id: int
    name: str
    kind: IdentityKind
    role_attributes: list[str]
    state: str
    enrollment_expires_at: datetime | None
    created_by: str
    created_at: datetime
    synced_at: datetime | None

    @classmethod
    def of(cls, row: Identity) -> IdentityOut:
        """From the table row."""
        return from_row(cls, row)


class EnrollmentOut(BaseModel):
    """The one-time enrollment token: shown once, never stored by this service."""

    identity: IdentityOut
    jwt: str
    expires_at: datetime
    qr_svg: str


class ReissueIn(BaseModel):
    """How long the new token lives."""

    enrollment_minutes: int = Field(ge=5)


class SyncOut(BaseModel):
    """What a sync with the controller changed."""

    updated: dict[str, tuple[str, str]]
    missing_on_controller: list[str]
    unmanaged_on_controller: list[str]


class GrantIn(BaseModel):
    """Model access for ``@identity-name`` or ``#attribute``."""

    subject: str = Field(min_length=2, max_length=130)
    model_service: str = Field(min_length=1, max_length=128)


class GrantOut(BaseModel):
    """A grant (keys are per identity: /identities/{id}/keys)."""

    id: int
    subject: str
    model_service: str
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, grant: ModelGrant) -> GrantOut:
        """From the table row."""
        return from_row(cls, grant)


def _row(db: DbSession, identity_id: int) -> Identity:
    row = db.get(Identity, identity_id)
    if row is None:
        raise service.IdentityError(f"no identity with id {identity_id}")
    return row


def _enrollment(row: Identity, jwt: str, expires_at: datetime) -> EnrollmentOut:
    return EnrollmentOut(
        identity=IdentityOut.of(row), jwt=jwt, expires_at=expires_at, qr_svg=qr_svg(jwt)
    )


@router.get("/identities", response_model=list[IdentityOut], tags=["identities"])
@reads_only
def list_identities(_: CurrentReader, db: DbSession) -> list[IdentityOut]:
    """Every identity with its last known state (POST /identities/sync to refresh)."""
    return [IdentityOut.of(r) for r in db.scalars(select(Identity).order_by(Identity.name))]


@router.post("/identities", response_model=EnrollmentOut, status_code=201, tags=["identities"])
def create_identity(
    body: IdentityIn,
    admin: CurrentAdmin,
    db: DbSession,
    settings: Settings,
    controller: ControllerDep,
    request: Request,
) -> EnrollmentOut:
    """Create an identity on the controller; its enrollment JWT is shown once."""
    minutes = min(
        body.enrollment_minutes or settings.enrollment_minutes_default,
        settings.enrollment_minutes_max,
    )
    created = service.create_identity(
        db,
        controller,
        name=body.name,
        kind=body.kind,
        role_attributes=body.role_attributes,
        enrollment_minutes=minutes,
        actor=admin.username,
        client=client_of(request),
    )
    return _enrollment(created.identity, created.token.jwt, created.token.expires_at)


@router.post("/identities/sync", response_model=SyncOut, tags=["identities"])
def sync(
    admin: CurrentAdmin, db: DbSession, controller: ControllerDep, request: Request
) -> SyncOut:
    """Reconcile every identity's state with the controller and report the changes."""
    report = service.sync_identities(
        db, controller, actor=admin.username, client=client_of(request)
    )
    return SyncOut(
        updated=report.updated,
        missing_on_controller=report.missing_on_controller,
        unmanaged_on_controller=report.unmanaged_on_controller,
    )


@router.get("/identities/{identity_id}", response_model=IdentityOut, tags=["identities"])
@reads_only
def get_identity(identity_id: RowId, _: CurrentReader, db: DbSession) -> IdentityOut:
    """One identity."""
    return IdentityOut.of(_row(db, identity_id))


@router.delete("/identities/{identity_id}", status_code=204, tags=["identities"])
def delete_identity(
    identity_id: RowId,
    admin: CurrentAdmin,
    db: DbSession,
    controller: ControllerDep,
    request: Request,
) -> Response:
    """Delete on the controller (its connections close) and here."""
    service.delete_identity(
        db, controller, _row(db, identity_id), actor=admin.username, client=client_of(request)
    )
    return Response(status_code=204)


@router.post("/identities/{identity_id}/disable", response_model=IdentityOut, tags=["identities"])
def disable(
    identity_id: RowId,
    admin: CurrentAdmin,
    db: DbSession,
    controller: ControllerDep,
    request: Request,
) -> IdentityOut:
    """Disable: the controller refuses the identity's sessions until enabled."""
    row = _row(db, identity_id)
    service.set_disabled(db, controller, row, True, actor=admin.username, client=client_of(request))
    return IdentityOut.of(row)


@router.post("/identities/{identity_id}/enable", response_model=IdentityOut, tags=["identities"])
def enable(
    identity_id: RowId,
    admin: CurrentAdmin,
    db: DbSession,
    controller: ControllerDep,
    request: Request,
) -> IdentityOut:
    """Enable a disabled identity."""
    row = _row(db, identity_id)
    service.set_disabled(
        db, controller, row, False, actor=admin.username, client=client_of(request)
    )
    return IdentityOut.of(row)


@router.post("/identities/{identity_id}/reissue", response_model=EnrollmentOut, tags=["identities"])
def reissue(
    identity_id: RowId,
    body: ReissueIn,
    admin: CurrentAdmin,
    db: DbSession,
    settings: Settings,
    controller: ControllerDep,
    request: Request,
) -> EnrollmentOut:
    """A fresh enrollment token for an identity whose token expired."""
    row = _row(db, identity_id)
    token = service.reissue(
        db,
        controller,
        row,
        min(body.enrollment_minutes, settings.enrollment_minutes_max),
        actor=admin.username,
        client=client_of(request),
    )
    return _enrollment(row, token.jwt, token.expires_at)


@router.get("/grants", response_model=list[GrantOut], tags=["grants"])
@reads_only
def list_grants(_: CurrentReader, db: DbSession) -> list[GrantOut]:
    """Every model grant."""
    return [GrantOut.of(g) for g in db.scalars(select(ModelGrant).order_by(ModelGrant.id))]


@router.post("/grants", response_model=GrantOut, status_code=201, tags=["grants"])
def grant(
    body: GrantIn,
    admin: CurrentAdmin,
    db: DbSession,
    controller: ControllerDep,
    settings: Settings,
    request: Request,
) -> GrantOut:
    """Grant a model: a Dial policy on the controller; the model joins the access policy of
    the subject's keys at once (keys: POST /identities/{id}/keys)."""
    made = grants.grant_model(
        db,
        controller,
        subject=body.subject,
        model_service=body.model_service,
        actor=admin.username,
        client=client_of(request),
        gateway=grants.site_gateway(settings),
    )
    return GrantOut.of(made)


@router.delete("/grants/{grant_id}", status_code=204, tags=["grants"])
def revoke(
    grant_id: RowId, admin: CurrentAdmin, db: DbSession, controller: ControllerDep, request: Request
) -> Response:
    """Remove the Dial policy; the model leaves the subject's keys at once."""
    found = db.get(ModelGrant, grant_id)
    if found is None:
        raise service.IdentityError(f"no grant with id {grant_id}")
    grants.revoke_grant(db, controller, found, actor=admin.username, client=client_of(request))
    return Response(status_code=204)
