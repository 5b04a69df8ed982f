"""Identities, kept in step between our database and the controller.

Order of work keeps the two from silently disagreeing: the controller acts first; the
database row and its audit event are committed after; if that commit fails, the
controller object is deleted again. A controller that is down gives ControllerUnreachable
(503) and nothing changes anywhere, but the attempt is audited
(:func:`~appliance.admin.services.controller_steps.controller_step`). ``sync`` reconciles
and reports what it changed. What an identity may use is in
:mod:`appliance.admin.services.grants`; its keys in :mod:`appliance.admin.services.api_keys`.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from appliance.admin.services.controller_steps import controller_step
from appliance.audit.record import record_event
from appliance.db.models import Identity, IdentityKind, ModelGrant, utcnow
from appliance.errors import ApplianceError
from appliance.ziti.errors import NotFoundError
from appliance.ziti.interfaces import IdentityController
from appliance.ziti.models import EnrollmentToken, identity_state

__all__ = [
    "IDENTITY_NAME",
    "ROLE_ATTRIBUTE",
    "Created",
    "IdentityError",
    "SyncReport",
    "create_identity",
    "delete_identity",
    "reissue",
    "set_disabled",
    "sync_identities",
]

#: What an identity's name (and an ``@name`` subject after its @) may be.
IDENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
#: What a role attribute (and a ``#attribute`` grant subject) may be.
ROLE_ATTRIBUTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Our kinds as the controller's identity types (a v2 controller stores them as Default).
_TYPES = {
    IdentityKind.user: "User",
    IdentityKind.team: "Default",
    IdentityKind.device: "Device",
    IdentityKind.service: "Service",
}


class IdentityError(ApplianceError):
    """A request about identities (or grants) that cannot be done as asked (HTTP 409/422)."""

    http_status = 422


@dataclass(frozen=True)
class Created:
    """A new identity and its one-time enrollment token (shown once, never stored)."""

    identity: Identity
    token: EnrollmentToken


@dataclass
class SyncReport:
    """What a sync changed."""

    updated: dict[str, tuple[str, str]] = field(default_factory=dict)
    missing_on_controller: list[str] = field(default_factory=list)
    unmanaged_on_controller: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the sync changed any row here."""
        return bool(self.updated or self.missing_on_controller)


def create_identity(
    db: Session,
    controller: IdentityController,
    *,
    name: str,
    kind: IdentityKind,
    role_attributes: list[str],
    enrollment_minutes: int,
    actor: str,
    client: str,
) -> Created:
    """Create the identity on the controller, then record it; all or nothing."""
    if not IDENTITY_NAME.match(name):
        raise IdentityError(
            f"identity name {name!r}: expected letters, digits, '.', '_', '@' or '-', at most 128"
        )
    bad = [a for a in role_attributes if not ROLE_ATTRIBUTE.match(a)]
    if bad:
        raise IdentityError(f"role attributes {bad}: expected letters, digits, '.', '_', '-'")
    if kind not in _TYPES:
        raise IdentityError(
            f"kind {kind.value!r}: routers are enrolled as edge routers by the installer, "
            "not as identities"
        )
    if db.scalar(select(Identity).where(Identity.name == name)) is not None:
        raise IdentityError(f"identity {name!r} already exists")
    attributes = sorted({*role_attributes, f"kind-{kind.value}"})
    _remove_orphans(db, controller, name, actor=actor, client=client)
    token = controller_step(
        db,
        actor,
        client,
        "identity.create",
        name,
        lambda: controller.create_identity(
            name,
            type=_TYPES[kind],
            role_attributes=attributes,
            enrollment_minutes=enrollment_minutes,
        ),
    )
    row = Identity(
        name=name,
        kind=kind,
        ziti_id=token.identity_id,
        role_attributes=attributes,
        state="pending",
        enrollment_expires_at=token.expires_at,
        created_by=actor,
        synced_at=utcnow(),
    )
    try:
        db.add(row)
        record_event(
            db,
            actor=actor,
            action="identity.create",
            target=name,
            client=client,
            details={
                "kind": kind.value,
                "attributes": attributes,
                "ziti_id": token.identity_id,
                "enrollment_expires_at": token.expires_at.isoformat(),
            },
        )
        db.commit()
    except SQLAlchemyError:
        db.rollback()
        controller.delete_identity(token.identity_id)  # undo: never a controller-only identity
        raise
    return Created(row, token)


def _remove_orphans(
    db: Session, controller: IdentityController, name: str, *, actor: str, client: str
) -> None:
    """Delete what an earlier create of ``name`` left on the controller and not here.

    A create whose controller answered too late (a slow or frozen controller: the client
    gave up, the controller went on) leaves an identity on the controller with no row
    here. It carries our ``kind-*`` mark, so the next create of the name removes it
    (audited) instead of failing on the duplicate; an identity of that name that this
    service did not make is refused, never touched.
    """
    found = controller_step(
        db,
        actor,
        client,
        "identity.create",
        name,
        lambda: controller.list_identities(f'name="{name}"'),
    )
    for stray in found:
        if stray.name != name:
            continue
        if stray.is_admin or not any(a.startswith("kind-") for a in stray.role_attributes):
            raise IdentityError(
                f"identity {name!r} already exists on the controller and was not made by "
                "this service; choose another name or remove it there"
            )
        controller_step(
            db,
            actor,
            client,
            "identity.create",
            name,
            functools.partial(controller.delete_identity, stray.id),
        )
        record_event(
            db,
            actor=actor,
            action="identity.orphan-removed",
            target=name,
            client=client,
            details={
                "ziti_id": stray.id,
                "why": "left on the controller by an earlier create whose answer never came",
            },
        )
        db.commit()


def delete_identity(
    db: Session, controller: IdentityController, row: Identity, *, actor: str, client: str
) -> None:
    """Delete on the controller (already gone is fine) with its grants' Dial policies,
    then here. A policy left behind would name a deleted identity and make a new grant
    of the same name fail on the controller."""
    grants = list(db.scalars(select(ModelGrant).where(ModelGrant.subject == f"@{row.name}")))
    if row.ziti_id is not None:

        def delete() -> None:
            # Deleted on the controller already: the goal is reached.
            for grant in grants:
                if grant.ziti_policy_id:
                    with contextlib.suppress(NotFoundError):
                        controller.delete_service_policy(grant.ziti_policy_id)
            with contextlib.suppress(NotFoundError):
                controller.delete_identity(row.ziti_id or "")

        controller_step(db, actor, client, "identity.delete", row.name, delete)
    record_event(
        db,
        actor=actor,
        action="identity.delete",
        target=row.name,
        client=client,
        details={"ziti_id": row.ziti_id},
    )
    for grant in grants:
        db.delete(grant)
    db.delete(row)


def set_disabled(
    db: Session,
    controller: IdentityController,
    row: Identity,
    disabled: bool,
    *,
    actor: str,
    client: str,
) -> None:
    """Disable (its connections are refused) or enable an identity."""
    action = "identity.disable" if disabled else "identity.enable"
    ziti_id = _ziti_id(row)
    controller_step(
        db,
        actor,
        client,
        action,
        row.name,
        (lambda: controller.disable_identity(ziti_id, None))
        if disabled
        else (lambda: controller.enable_identity(ziti_id)),
    )
    row.state = "disabled" if disabled else "pending" if row.state == "disabled" else row.state
    row.synced_at = utcnow()
    record_event(db, actor=actor, action=action, target=row.name, client=client)


def reissue(
    db: Session,
    controller: IdentityController,
    row: Identity,
    minutes: int,
    *,
    actor: str,
    client: str,
) -> EnrollmentToken:
    """A fresh one-time token for an identity that has not enrolled."""
    ziti_id = _ziti_id(row)
    token = controller_step(
        db,
        actor,
        client,
        "identity.reissue",
        row.name,
        lambda: controller.reissue_enrollment(ziti_id, minutes),
    )
    row.state = "pending"
    row.enrollment_expires_at = token.expires_at
    record_event(
        db,
        actor=actor,
        action="identity.reissue",
        target=row.name,
        client=client,
        details={"enrollment_expires_at": token.expires_at.isoformat()},
    )
    return token


def sync_identities(
    db: Session,
    controller: IdentityController,
    *,
    actor: str,
    client: str,
    audit_unchanged: bool = True,
) -> SyncReport:
    """Bring every row's state in line with the controller and report what changed.

    The sync is audited; with ``audit_unchanged=False`` (the background sync) only when
    it changed a row here, so a quiet site's log does not fill with empty syncs, and a
    controller that cannot be asked is left to the caller to audit (once per outage).
    """
    asked_at = utcnow()
    found = (
        controller_step(db, actor, client, "identity.sync", "*", controller.list_identities)
        if audit_unchanged
        else controller.list_identities()
    )
    live = {i.id: i for i in found}
    report = SyncReport()
    known = set()
    for row in db.scalars(select(Identity).order_by(Identity.name)):
        remote = live.get(row.ziti_id or "")
        if remote is None:
            if row.created_at >= asked_at:
                continue  # made after the controller was asked: the listing cannot know it
            if row.state != "missing on controller":
                report.missing_on_controller.append(row.name)
                row.state = "missing on controller"
            continue
        known.add(remote.id)
        state = identity_state(remote)
        if state != row.state:
            report.updated[row.name] = (row.state, state)
            row.state = state
        row.synced_at = utcnow()
    report.unmanaged_on_controller = sorted(
        i.name for i in live.values() if i.id not in known and not i.is_admin
    )
    if not audit_unchanged and not report.changed:
        return report
    record_event(
        db,
        actor=actor,
        action="identity.sync",
        target="*",
        client=client,
        details={
            "updated": {k: list(v) for k, v in report.updated.items()},
            "missing_on_controller": report.missing_on_controller,
            "unmanaged_on_controller": report.unmanaged_on_controller,
        },
    )
    return report


def _ziti_id(row: Identity) -> str:
    if row.ziti_id is None:
        raise IdentityError(f"identity {row.name!r} has no controller id; run a sync")
    return row.ziti_id
