"""A window on the controller: the vendor's access made at activation, taken away at the end.

Activation creates one short-lived identity per named engineer (an enrollment token
minutes long, handed over once), a Dial policy to exactly the scoped services and an
edge-router policy for the vendor access router; the window is recorded active only
once all of them exist, and a failure on either side deletes what was made.

Ending is two steps, each durable before the next: the decision (state, time, who, why)
is committed with its audit record first (appliance.breakglass.windows); then the work
here: delete the vendor identities and policies, wait until no circuit of theirs remains,
and record the time from decision to confirmation. If the controller is down, the
decision stands, the nftables gate is already closed, and the reaper finishes the cleanup
when the controller answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from appliance.breakglass.clock import BootClock
from appliance.breakglass.errors import BreakglassError
from appliance.breakglass.policy import BreakglassPolicy
from appliance.breakglass.records import record
from appliance.breakglass.shell.logins import SECRETS_KEY, mint_shell_secrets, shell_hosts
from appliance.breakglass.windows import make_active
from appliance.db.models import BreakglassWindow, WindowState, utcnow
from appliance.ziti.errors import NotFoundError, ZitiError
from appliance.ziti.interfaces import AccessController
from appliance.ziti.models import EnrollmentToken
from appliance.ziti.models import Service as ZitiService

__all__ = [
    "VENDOR_ATTRIBUTE",
    "Connection",
    "Handover",
    "activate",
    "confirm_cleanup",
    "connections",
    "finish_cleanups",
]

#: Role attribute every vendor identity carries: the audit log follows these identities.
VENDOR_ATTRIBUTE = "breakglass"


@dataclass(frozen=True)
class Handover:
    """One engineer's enrollment token, and their shell secret when the scope names a
    vendor shell (else empty): shown once to the approving admin, never stored."""

    engineer: str
    identity_name: str
    token: EnrollmentToken
    shell_secret: str = ""

    def __repr__(self) -> str:  # never the secret in a log line
        return f"Handover({self.engineer!r}, {self.identity_name!r})"


@dataclass(frozen=True)
class Connection:
    """A vendor engineer's open circuit, as the controller reports it."""

    engineer: str
    service: str
    since: datetime | None
    circuit_id: str


def activate(
    db: Session,
    controller: AccessController,
    policy: BreakglassPolicy,
    window: BreakglassWindow,
    *,
    actor: str,
    client: str,
    clock: BootClock,
) -> list[Handover]:
    """Create the vendor identities and policies on the controller, then record the window
    active; a failure on either side undoes the controller objects."""
    tag = f"breakglass-w{window.id}"
    made: dict[str, Any] = {"identities": {}, "service_policy": None, "router_policy": None}
    handovers: list[Handover] = []
    # Shell secrets only where the scope names a vendor shell: stored as hashes in ``made``.
    shell = mint_shell_secrets(window.engineers if shell_hosts(window.scope) else [])
    if shell.stored:
        made[SECRETS_KEY] = shell.stored
    try:
        services = _scoped_services(controller, window.scope)
        made["services"] = {s.id: s.name for s in services}  # names the events' service ids
        for engineer in window.engineers:
            name = f"vendor-w{window.id}-{engineer}"
            token = controller.create_identity(
                name,
                type="User",
                role_attributes=[VENDOR_ATTRIBUTE, tag],
                enrollment_minutes=policy.enrollment_minutes,
            )
            made["identities"][engineer] = token.identity_id
            handovers.append(Handover(engineer, name, token, shell.shown.get(engineer, "")))
        made["service_policy"] = controller.create_service_policy(
            f"{tag}-dial",
            type="Dial",
            identity_roles=[f"#{tag}"],
            service_roles=[f"@{s.id}" for s in services],
        )
        made["router_policy"] = controller.create_edge_router_policy(
            f"{tag}-routers", identity_roles=[f"#{tag}"], edge_router_roles=policy.router_roles
        )
    except (ZitiError, BreakglassError) as exc:
        _delete_made(controller, made, best_effort=True)
        db.rollback()
        record(
            db,
            window,
            "activate",
            actor=actor,
            outcome="error",
            client=client,
            details={"window": window.id, "error": str(exc)[:500]},
        )
        db.commit()
        raise
    try:
        make_active(
            db,
            window,
            made=made,
            clock=clock,
            actor=actor,
            client=client,
            enrollment_expires_at={h.engineer: h.token.expires_at.isoformat() for h in handovers},
        )
        db.commit()
    except SQLAlchemyError:
        db.rollback()
        _delete_made(
            controller, made, best_effort=True
        )  # never vendor access the database does not know about
        raise
    return handovers


def _scoped_services(controller: AccessController, scope: list[str]) -> list[ZitiService]:
    found = []
    for name in scope:
        services = controller.list_services(f'name="{name}"')
        if len(services) != 1:
            raise BreakglassError(f"the controller has no service named {name!r} (in the scope)")
        found.extend(services)
    return found


def _delete_made(controller: AccessController, made: dict[str, Any], *, best_effort: bool) -> None:
    """Delete a window's controller objects; already gone counts as deleted.

    Identities go first: deleting one makes the controller drop its sessions and circuits.
    ``best_effort`` (undoing a failed activation) goes on past errors; ending does not.
    """
    deletes: list[tuple[Callable[[str], None], str]] = [
        (controller.delete_identity, i) for i in sorted(made.get("identities", {}).values())
    ]
    if made.get("service_policy"):
        deletes.append((controller.delete_service_policy, made["service_policy"]))
    if made.get("router_policy"):
        deletes.append((controller.delete_edge_router_policy, made["router_policy"]))
    for delete, object_id in deletes:
        try:
            delete(object_id)
        except NotFoundError:
            continue
        except ZitiError:
            if not best_effort:
                raise


# --- ending ---------------------------------------------------------------------------


def confirm_cleanup(
    db: Session,
    controller: AccessController,
    policy: BreakglassPolicy,
    window: BreakglassWindow,
    *,
    actor: str,
    client: str,
) -> bool:
    """Delete the window's identities and policies, then wait until the controller shows no
    circuit of theirs; record how long it took from the decision. True when confirmed."""
    made = window.ziti_objects or {}
    ids = set(made.get("identities", {}).values())
    try:
        _delete_made(controller, made, best_effort=False)
        deadline = time.monotonic() + policy.confirm_seconds
        while True:
            left = [c for c in controller.list_circuits() if c.client_id in ids]
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    except ZitiError as exc:
        return _cleanup_failed(db, window, actor, client, str(exc))
    if left:
        return _cleanup_failed(
            db,
            window,
            actor,
            client,
            f"{len(left)} vendor circuit(s) still open",
            [c.id for c in left],
        )
    confirmed = utcnow()
    window.cleanup_confirmed_at = confirmed
    window.ziti_objects = {**made, "cleanup_error": None}
    latency = (confirmed - (window.ended_at or confirmed)).total_seconds()
    record(
        db,
        window,
        "end-confirmed",
        actor=actor,
        client=client,
        details={
            "window": window.id,
            "decided_at": window.ended_at.isoformat() if window.ended_at is not None else None,
            "confirmed_at": confirmed.isoformat(),
            "decision_to_confirmation_ms": round(latency * 1000, 1),
            "identities_deleted": sorted(ids),
        },
    )
    db.commit()
    return True


def _cleanup_failed(
    db: Session,
    window: BreakglassWindow,
    actor: str,
    client: str,
    error: str,
    circuits: list[str] | None = None,
) -> bool:
    """Record a failed cleanup once per distinct error (the reaper retries every tick)."""
    db.rollback()
    made = window.ziti_objects or {}
    if made.get("cleanup_error") != error:
        window.ziti_objects = {**made, "cleanup_error": error}
        record(
            db,
            window,
            "end-confirmed",
            actor=actor,
            outcome="error",
            client=client,
            details={"window": window.id, "error": error[:500], "circuits": circuits or []},
        )
        db.commit()
    return False


def finish_cleanups(
    db: Session,
    controller: AccessController,
    policy: BreakglassPolicy,
    *,
    actor: str,
    client: str = "",
) -> list[int]:
    """Clean up every ended window the controller has not confirmed yet; the confirmed."""
    done = []
    for window in list(
        db.scalars(
            select(BreakglassWindow)
            .where(
                BreakglassWindow.state.in_([WindowState.expired, WindowState.revoked]),
                BreakglassWindow.activated_at.is_not(None),
                BreakglassWindow.cleanup_confirmed_at.is_(None),
                BreakglassWindow.extends_id.is_(None),
            )
            .order_by(BreakglassWindow.id)
        )
    ):
        if confirm_cleanup(db, controller, policy, window, actor=actor, client=client):
            done.append(window.id)
    return done


def connections(controller: AccessController, window: BreakglassWindow) -> list[Connection]:
    """Which engineer of ``window`` is connected, to what, since when."""
    by_id = {v: k for k, v in (window.ziti_objects or {}).get("identities", {}).items()}
    return [
        Connection(by_id[c.client_id], c.service_name or c.service_id or "?", c.created_at, c.id)
        for c in controller.list_circuits()
        if c.client_id in by_id
    ]
