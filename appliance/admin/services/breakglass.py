"""Break-glass windows: request, two-person approval, activation, and an end that sticks.

A window's life (``WindowState``)::

    requested ──approve──▶ active ──(end time | revoke | seal)──▶ expired | revoked
        │  └──approve (start later)──▶ approved ──activate──▶ active
        ├──deny──▶ denied        └──(start time + duration passed)──▶ expired
        └──withdraw──▶ withdrawn (the requester, before it starts)

The approver is always a different admin from the requester. Extending an active window is
a new request (``extends_id``) that needs the same approval; once approved it moves its
parent's end on both clocks (appliance.breakglass.clock).

Ending is two steps, each durable before the next: the decision (state, time, who, why)
is committed with its audit record first; then the controller work (delete the vendor
identities and policies, wait until no circuit of theirs remains) and a second record
with the time from decision to confirmation. If the controller is down, the decision
stands, the nftables gate is already closed, and the reaper finishes the cleanup when
the controller answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from appliance.audit.record import record_event
from appliance.breakglass.clock import BootClock, Deadline, is_over
from appliance.breakglass.gate import GateState
from appliance.breakglass.policy import BreakglassPolicy
from appliance.db.models import BreakglassWindow, User, WindowState, utcnow
from appliance.errors import ApplianceError
from appliance.ziti.errors import NotFoundError, ZitiError
from appliance.ziti.interfaces import AccessController
from appliance.ziti.models import EnrollmentToken
from appliance.ziti.models import Service as ZitiService

__all__ = [
    "OPEN_STATES",
    "BreakglassConflictError",
    "BreakglassError",
    "BreakglassForbiddenError",
    "BreakglassNotFoundError",
    "BreakglassPolicy",
    "Connection",
    "Handover",
    "activate",
    "approve",
    "confirm_cleanup",
    "connections",
    "deny",
    "end_window",
    "finish_cleanups",
    "gate_state",
    "get_window",
    "reap",
    "request_extension",
    "request_window",
    "seal",
    "target_of",
    "withdraw",
]

_ENGINEER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
#: Role attribute every vendor identity carries: the audit log follows these identities.
VENDOR_ATTRIBUTE = "breakglass"
OPEN_STATES = (WindowState.requested, WindowState.approved, WindowState.active)
#: How far ahead a window may be scheduled.
MAX_LEAD_DAYS = 30
_ENDED = {"expired": WindowState.expired, "revoked": WindowState.revoked}


class BreakglassError(ApplianceError):
    """A break-glass request that cannot be done as asked."""

    http_status = 422


class BreakglassNotFoundError(BreakglassError):
    """No such window."""

    http_status = 404


class BreakglassConflictError(BreakglassError):
    """The window is not in a state that allows this."""

    http_status = 409


class BreakglassForbiddenError(BreakglassError):
    """This admin may not do this to this window (two-person rule)."""

    http_status = 403


@dataclass(frozen=True)
class Handover:
    """One engineer's enrollment token: shown once to the approving admin, never stored."""

    engineer: str
    identity_name: str
    token: EnrollmentToken


@dataclass(frozen=True)
class Connection:
    """A vendor engineer's open circuit, as the controller reports it."""

    engineer: str
    service: str
    since: datetime | None
    circuit_id: str


def target_of(window: BreakglassWindow) -> str:
    """The audit target of every record about ``window``."""
    return f"window:{window.id}"


def get_window(db: Session, window_id: int) -> BreakglassWindow:
    """The window, or BreakglassNotFoundError."""
    window = db.get(BreakglassWindow, window_id)
    if window is None:
        raise BreakglassNotFoundError(f"no break-glass window with id {window_id}")
    return window


# --- requests and decisions -----------------------------------------------------------


def request_window(
    db: Session,
    policy: BreakglassPolicy,
    *,
    requester: User,
    reason: str,
    ticket: str,
    scope: list[str],
    engineers: list[str],
    duration_minutes: int,
    starts_at: datetime | None,
    extends: BreakglassWindow | None = None,
    client: str,
    now: datetime | None = None,
) -> BreakglassWindow:
    """Record a request; nothing is granted until another admin approves it.

    ``extends`` is set by request_extension, which checks the parent first.
    """
    now = now or utcnow()
    if not reason.strip() or not ticket.strip():
        raise BreakglassError("a window needs a reason and a ticket reference")
    if not 1 <= duration_minutes <= policy.max_minutes:
        raise BreakglassError(
            f"duration {duration_minutes} min: expected 1 to {policy.max_minutes} min "
            "(the site's maximum, breakglass_max_minutes)"
        )
    if not scope:
        raise BreakglassError("a window needs a scope: the overlay services the vendor may dial")
    if not engineers:
        raise BreakglassError("a window needs at least one named vendor engineer")
    bad = [s for s in scope if not _SERVICE.match(s)] + [
        e for e in engineers if not _ENGINEER.match(e)
    ]
    if bad:
        raise BreakglassError(
            f"{bad}: service and engineer names are letters, digits, '.', '_' or '-'"
        )
    if len(set(engineers)) != len(engineers) or len(set(scope)) != len(scope):
        raise BreakglassError("scope and engineers must not repeat a name")
    if starts_at is not None and starts_at < now - timedelta(minutes=1):
        raise BreakglassError(f"the start {starts_at.isoformat()} is in the past")
    if starts_at is not None and starts_at > now + timedelta(days=MAX_LEAD_DAYS):
        raise BreakglassError(
            f"the start {starts_at.isoformat()} is more than {MAX_LEAD_DAYS} days ahead: "
            "request the window nearer the time"
        )
    window = BreakglassWindow(
        state=WindowState.requested,
        requester=requester.username,
        reason=reason.strip(),
        ticket=ticket.strip(),
        scope=scope,
        engineers=engineers,
        duration_minutes=duration_minutes,
        starts_at=starts_at if starts_at is not None and starts_at > now else None,
        extends_id=extends.id if extends is not None else None,
        created_at=now,
        decision_note="",
        end_reason="",
        ziti_objects={},
    )
    db.add(window)
    db.flush()
    record_event(
        db,
        actor=requester.username,
        action="breakglass.extend-request" if extends is not None else "breakglass.request",
        target=target_of(extends if extends is not None else window),
        client=client,
        details={
            "window": window.id,
            "reason": window.reason,
            "ticket": window.ticket,
            "scope": scope,
            "engineers": engineers,
            "duration_minutes": duration_minutes,
            "starts_at": window.starts_at.isoformat() if window.starts_at else None,
        },
    )
    return window


def request_extension(
    db: Session,
    policy: BreakglassPolicy,
    parent: BreakglassWindow,
    *,
    requester: User,
    reason: str,
    ticket: str,
    minutes: int,
    client: str,
) -> BreakglassWindow:
    """Ask for ``minutes`` more on an active window: a request of its own, for the same
    scope and engineers, approved like any other."""
    if parent.state != WindowState.active or parent.extends_id is not None:
        raise BreakglassConflictError(
            f"window {parent.id} is {parent.state.value}: only an active window can be extended"
        )
    return request_window(
        db,
        policy,
        requester=requester,
        reason=reason,
        ticket=ticket,
        scope=list(parent.scope),
        engineers=list(parent.engineers),
        duration_minutes=minutes,
        starts_at=None,
        extends=parent,
        client=client,
    )


def _decide(window: BreakglassWindow, approver: User, what: str) -> None:
    if window.state != WindowState.requested:
        raise BreakglassConflictError(
            f"window {window.id} is {window.state.value}: only a requested window can be {what}"
        )
    if approver.username == window.requester:
        raise BreakglassForbiddenError(
            f"{approver.username} requested window {window.id} and cannot approve or deny it: "
            "a second admin must decide"
        )


def deny(db: Session, window: BreakglassWindow, *, approver: User, note: str, client: str) -> None:
    """A second admin says no."""
    _decide(window, approver, "denied")
    window.state = WindowState.denied
    window.decided_by, window.decided_at, window.decision_note = approver.username, utcnow(), note
    record_event(
        db,
        actor=approver.username,
        action="breakglass.deny",
        target=target_of(_root(db, window)),
        client=client,
        details={"window": window.id, "note": note},
    )


def withdraw(db: Session, window: BreakglassWindow, *, requester: User, client: str) -> None:
    """The requester takes back a request that has not started."""
    if window.state not in (WindowState.requested, WindowState.approved):
        raise BreakglassConflictError(
            f"window {window.id} is {window.state.value}: only a request that has not started "
            "can be withdrawn (revoke an active one)"
        )
    if requester.username != window.requester:
        raise BreakglassForbiddenError(
            f"only {window.requester}, who requested window {window.id}, can withdraw it"
        )
    window.state = WindowState.withdrawn
    window.ended_at, window.ended_by, window.end_reason = utcnow(), requester.username, "withdrawn"
    record_event(
        db,
        actor=requester.username,
        action="breakglass.withdraw",
        target=target_of(_root(db, window)),
        client=client,
        details={"window": window.id},
    )


def approve(
    db: Session,
    controller: AccessController,
    policy: BreakglassPolicy,
    window: BreakglassWindow,
    *,
    approver: User,
    note: str,
    client: str,
    clock: BootClock,
) -> list[Handover]:
    """A second admin says yes: an extension moves its parent's end; a window that starts
    now is activated (its tokens are returned, once); a later one waits for its start."""
    _decide(window, approver, "approved")
    window.decided_by, window.decided_at, window.decision_note = approver.username, utcnow(), note
    if window.extends_id is not None:
        _apply_extension(db, window, approver=approver, client=client, clock=clock)
        return []
    if window.starts_at is not None and window.starts_at > utcnow():
        window.state = WindowState.approved
        record_event(
            db,
            actor=approver.username,
            action="breakglass.approve",
            target=target_of(window),
            client=client,
            details={"window": window.id, "note": note, "starts_at": window.starts_at.isoformat()},
        )
        return []
    record_event(
        db,
        actor=approver.username,
        action="breakglass.approve",
        target=target_of(window),
        client=client,
        details={"window": window.id, "note": note},
    )
    return _activate(
        db, controller, policy, window, actor=approver.username, client=client, clock=clock
    )


def activate(
    db: Session,
    controller: AccessController,
    policy: BreakglassPolicy,
    window: BreakglassWindow,
    *,
    admin: User,
    client: str,
    clock: BootClock,
) -> list[Handover]:
    """Start an approved window at or after its start time; only its approver may, since
    the tokens are handed over by whoever approved."""
    if window.state != WindowState.approved:
        raise BreakglassConflictError(
            f"window {window.id} is {window.state.value}: only an approved window is activated"
        )
    if admin.username != window.decided_by:
        raise BreakglassForbiddenError(
            f"only {window.decided_by}, who approved window {window.id}, can start it"
        )
    if window.starts_at is not None and window.starts_at > utcnow():
        raise BreakglassConflictError(
            f"window {window.id} starts at {window.starts_at.isoformat()}: activate it then"
        )
    return _activate(
        db, controller, policy, window, actor=admin.username, client=client, clock=clock
    )


def _apply_extension(
    db: Session, extension: BreakglassWindow, *, approver: User, client: str, clock: BootClock
) -> None:
    parent = get_window(db, extension.extends_id or 0)
    if parent.state != WindowState.active or parent.ends_at is None:
        raise BreakglassConflictError(
            f"window {parent.id} is {parent.state.value}: it can no longer be extended"
        )
    seconds = extension.duration_minutes * 60
    parent.ends_at = parent.ends_at + timedelta(seconds=seconds)
    deadline = _deadline(parent)
    if deadline is not None:
        parent.deadline_boottime = deadline.extended(seconds).boottime
    extension.state = WindowState.approved
    extension.activated_at = utcnow()
    record_event(
        db,
        actor=approver.username,
        action="breakglass.extend",
        target=target_of(parent),
        client=client,
        details={
            "window": parent.id,
            "extension": extension.id,
            "minutes": extension.duration_minutes,
            "ends_at": parent.ends_at.isoformat(),
        },
    )


def _activate(
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
            handovers.append(Handover(engineer, name, token))
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
        record_event(
            db,
            actor=actor,
            action="breakglass.activate",
            target=target_of(window),
            outcome="error",
            client=client,
            details={"window": window.id, "error": str(exc)[:500]},
        )
        db.commit()
        raise
    now = utcnow()
    # A whole-second end: nftables' ``meta time`` compares whole seconds.
    ends_at = (now + timedelta(minutes=window.duration_minutes)).replace(microsecond=0)
    window.state = WindowState.active
    window.activated_at = now
    window.ends_at = ends_at
    window.boot_id = clock.boot_id
    window.deadline_boottime = clock.deadline((ends_at - now).total_seconds()).boottime
    window.ziti_objects = made
    try:
        record_event(
            db,
            actor=actor,
            action="breakglass.activate",
            target=target_of(window),
            client=client,
            details={
                "window": window.id,
                "ends_at": window.ends_at.isoformat(),
                "identities": made["identities"],
                "scope": window.scope,
                "enrollment_expires_at": {
                    h.engineer: h.token.expires_at.isoformat() for h in handovers
                },
            },
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


def end_window(
    db: Session,
    controller: AccessController | None,
    policy: BreakglassPolicy,
    window: BreakglassWindow,
    *,
    how: Literal["expired", "revoked"],
    actor: str,
    reason: str,
    client: str,
) -> bool:
    """Decide the end (committed with its record), then clean up on the controller.

    Returns whether the cleanup was confirmed; if not, the reaper retries it.
    """
    if window.state != WindowState.active:
        raise BreakglassConflictError(
            f"window {window.id} is {window.state.value}: only an active window can end"
        )
    window.state = _ENDED[how]
    window.ended_at, window.ended_by, window.end_reason = utcnow(), actor, reason
    record_event(
        db,
        actor=actor,
        action=f"breakglass.{'expire' if how == 'expired' else 'revoke'}",
        target=target_of(window),
        client=client,
        details={"window": window.id, "reason": reason, "ends_at": _iso(window.ends_at)},
    )
    _close_extensions(db, window, actor=actor, client=client)
    db.commit()  # the decision is durable before any controller work
    if controller is None:
        return False
    return confirm_cleanup(db, controller, policy, window, actor=actor, client=client)


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
    record_event(
        db,
        actor=actor,
        action="breakglass.end-confirmed",
        target=target_of(window),
        client=client,
        details={
            "window": window.id,
            "decided_at": _iso(window.ended_at),
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
        record_event(
            db,
            actor=actor,
            action="breakglass.end-confirmed",
            target=target_of(window),
            outcome="error",
            client=client,
            details={"window": window.id, "error": error[:500], "circuits": circuits or []},
        )
        db.commit()
    return False


def _close_extensions(db: Session, window: BreakglassWindow, *, actor: str, client: str) -> None:
    """Pending extension requests die with their window."""
    for ext in db.scalars(
        select(BreakglassWindow).where(
            BreakglassWindow.extends_id == window.id,
            BreakglassWindow.state == WindowState.requested,
        )
    ):
        ext.state = WindowState.expired
        ext.ended_at, ext.ended_by, ext.end_reason = utcnow(), actor, "its window ended"
        record_event(
            db,
            actor=actor,
            action="breakglass.expire",
            target=target_of(window),
            client=client,
            details={"window": ext.id, "reason": "its window ended"},
        )


def seal(
    db: Session,
    controller: AccessController | None,
    policy: BreakglassPolicy,
    *,
    admin: User,
    client: str,
) -> list[int]:
    """End every window at once: active ones are revoked, pending ones denied."""
    record_event(db, actor=admin.username, action="breakglass.seal", target="site", client=client)
    db.commit()
    ended = []
    for window in db.scalars(
        select(BreakglassWindow)
        .where(BreakglassWindow.state.in_([WindowState.requested, WindowState.approved]))
        .order_by(BreakglassWindow.id)
    ):
        window.state = WindowState.denied
        window.decided_by, window.decided_at = admin.username, utcnow()
        window.decision_note = "site sealed"
        record_event(
            db,
            actor=admin.username,
            action="breakglass.deny",
            target=target_of(_root(db, window)),
            client=client,
            details={"window": window.id, "note": "site sealed"},
        )
        ended.append(window.id)
    db.commit()
    # Every end is decided (and committed) before any controller work, so one slow
    # cleanup cannot hold back the next window's end.
    for window in list(
        db.scalars(
            select(BreakglassWindow)
            .where(BreakglassWindow.state == WindowState.active)
            .order_by(BreakglassWindow.id)
        )
    ):
        end_window(
            db,
            None,
            policy,
            window,
            how="revoked",
            actor=admin.username,
            reason="site sealed",
            client=client,
        )
        ended.append(window.id)
    if controller is not None:
        finish_cleanups(db, controller, policy, actor=admin.username, client=client)
    return ended


# --- the reaper's tick and the gate ---------------------------------------------------


def reap(
    db: Session,
    controller: AccessController | None,
    policy: BreakglassPolicy,
    *,
    clock: BootClock,
    now: datetime | None = None,
) -> list[int]:
    """End what is over, expire what never started in time, retry unconfirmed cleanups.

    Returns the windows that changed state. Every end is decided before any cleanup;
    with ``controller`` None (the reaper passes it so, to set the gate first, or it could
    not be made) windows still end here and their cleanup waits for finish_cleanups.
    """
    now = now or utcnow()
    changed: list[int] = []
    for window in list(
        db.scalars(
            select(BreakglassWindow)
            .where(BreakglassWindow.state.in_(OPEN_STATES))
            .order_by(BreakglassWindow.id)
        )
    ):
        if window.state == WindowState.active:
            if is_over(_aware(window.ends_at, now), _deadline(window), now, clock):
                why = (
                    "end time reached"
                    if now >= _aware(window.ends_at, now)
                    else (
                        "end time reached on the boot clock"
                        if window.boot_id == clock.boot_id
                        else "the host restarted during the window"
                    )
                )
                end_window(
                    db,
                    None,  # decide every end first; the cleanups follow below
                    policy,
                    window,
                    how="expired",
                    actor="reaper",
                    reason=why,
                    client="",
                )
                changed.append(window.id)
        elif window.extends_id is None and _latest_end(window) <= now:
            window.state = WindowState.expired
            window.ended_at, window.ended_by = now, "reaper"
            window.end_reason = "never started before its end"
            record_event(
                db,
                actor="reaper",
                action="breakglass.expire",
                target=target_of(window),
                details={"window": window.id, "reason": window.end_reason},
            )
            db.commit()
            changed.append(window.id)
    if controller is not None:
        finish_cleanups(db, controller, policy, actor="reaper")
    return changed


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


def gate_state(db: Session, clock: BootClock, now: datetime | None = None) -> GateState:
    """How the nftables gate should stand: open until the latest active window's end."""
    now = now or utcnow()
    until: datetime | None = None
    seconds = 0.0
    for window in db.scalars(
        select(BreakglassWindow).where(BreakglassWindow.state == WindowState.active)
    ):
        deadline = _deadline(window)
        ends_at = _aware(window.ends_at, now)
        if deadline is None or is_over(ends_at, deadline, now, clock):
            continue
        # Both limits from the same window: its wall end and its boot-clock time left.
        left = min(deadline.remaining(clock), (ends_at - now).total_seconds())
        if left > seconds:
            until, seconds = ends_at, left
    return GateState(until, seconds)


def connections(controller: AccessController, window: BreakglassWindow) -> list[Connection]:
    """Which engineer of ``window`` is connected, to what, since when."""
    by_id = {v: k for k, v in (window.ziti_objects or {}).get("identities", {}).items()}
    return [
        Connection(by_id[c.client_id], c.service_name or c.service_id or "?", c.created_at, c.id)
        for c in controller.list_circuits()
        if c.client_id in by_id
    ]


def _deadline(window: BreakglassWindow) -> Deadline | None:
    if window.boot_id is None or window.deadline_boottime is None:
        return None
    return Deadline(window.boot_id, window.deadline_boottime)


def _latest_end(window: BreakglassWindow) -> datetime:
    start = window.starts_at or window.created_at
    return start + timedelta(minutes=window.duration_minutes)


def _root(db: Session, window: BreakglassWindow) -> BreakglassWindow:
    """An extension's records belong to its parent window's evidence."""
    return get_window(db, window.extends_id) if window.extends_id is not None else window


def _aware(moment: datetime | None, fallback: datetime) -> datetime:
    return moment if moment is not None else fallback


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
