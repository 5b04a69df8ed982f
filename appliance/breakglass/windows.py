"""A break-glass window's state machine: requests, two-person decisions, extensions, ends.

A window's life (``WindowState``)::

    requested ──approve──▶ active ──(end time | revoke | seal)──▶ expired | revoked
        │  └──approve (start later)──▶ approved ──activate──▶ active
        ├──deny──▶ denied        └──(start time + duration passed)──▶ expired
        └──withdraw──▶ withdrawn (the requester, before it starts)

The approver is always a different admin from the requester. Extending an active window is
a new request (``extends_id``) that needs the same approval; once approved it moves its
parent's end on both clocks (appliance.breakglass.clock).

Every transition here writes its audit record (:mod:`appliance.breakglass.records`) in
the same transaction. Nothing here talks to the controller: making the vendor's
identities and deleting them again is :mod:`appliance.breakglass.provisioning`, and
:class:`appliance.breakglass.service.Breakglass` puts the two together. An end is
committed here, with its record, before any controller work starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.breakglass.clock import BootClock, Deadline
from appliance.breakglass.errors import (
    BreakglassConflictError,
    BreakglassError,
    BreakglassForbiddenError,
    BreakglassNotFoundError,
)
from appliance.breakglass.policy import BreakglassPolicy
from appliance.breakglass.records import record, record_seal
from appliance.db.models import BreakglassWindow, User, WindowState, utcnow

__all__ = [
    "MAX_LEAD_DAYS",
    "OPEN_STATES",
    "approve",
    "check_activation",
    "deadline_of",
    "deny",
    "end",
    "get_window",
    "make_active",
    "request_extension",
    "request_window",
    "seal",
    "withdraw",
]

_ENGINEER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
OPEN_STATES = (WindowState.requested, WindowState.approved, WindowState.active)
#: How far ahead a window may be scheduled.
MAX_LEAD_DAYS = 30
_ENDED = {"expired": WindowState.expired, "revoked": WindowState.revoked}


def get_window(db: Session, window_id: int) -> BreakglassWindow:
    """The window, or BreakglassNotFoundError."""
    window = db.get(BreakglassWindow, window_id)
    if window is None:
        raise BreakglassNotFoundError(f"no break-glass window with id {window_id}")
    return window


def deadline_of(window: BreakglassWindow) -> Deadline | None:
    """The window's end on the boot clock, once it is active."""
    if window.boot_id is None or window.deadline_boottime is None:
        return None
    return Deadline(window.boot_id, window.deadline_boottime)


# --- requests and decisions -----------------------------------------------------------


@dataclass(frozen=True)
class WindowAsk:
    """What a request asks for: why, under which ticket, which services, for whom, how
    long, and from when (None: as soon as it is approved)."""

    reason: str
    ticket: str
    scope: list[str]
    engineers: list[str]
    duration_minutes: int
    starts_at: datetime | None = None


def request_window(
    db: Session,
    policy: BreakglassPolicy,
    ask: WindowAsk,
    *,
    requester: User,
    extends: BreakglassWindow | None = None,
    client: str,
    now: datetime | None = None,
) -> BreakglassWindow:
    """Record a request; nothing is granted until another admin approves it.

    ``extends`` is set by request_extension, which checks the parent first.
    """
    now = now or utcnow()
    reason, ticket, scope, engineers = ask.reason, ask.ticket, ask.scope, ask.engineers
    duration_minutes, starts_at = ask.duration_minutes, ask.starts_at
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
    unknown = [s for s in scope if policy.services is not None and s not in policy.services]
    if unknown:
        offered = ", ".join(policy.services or ()) or "none"
        raise BreakglassError(
            f"{', '.join(unknown)}: not a service this site offers a window (it offers: "
            f"{offered}); a host's vendor shell is offered once the inventory opts it in "
            "(appliance_vendor_shell: true) and the installer has run"
        )
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
    record(
        db,
        window,
        "extend-request" if extends is not None else "request",
        actor=requester.username,
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
    ask = WindowAsk(reason, ticket, list(parent.scope), list(parent.engineers), minutes)
    return request_window(db, policy, ask, requester=requester, extends=parent, client=client)


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
    record(
        db,
        window,
        "deny",
        actor=approver.username,
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
    record(
        db,
        window,
        "withdraw",
        actor=requester.username,
        client=client,
        details={"window": window.id},
    )


def approve(
    db: Session, window: BreakglassWindow, *, approver: User, note: str, client: str
) -> bool:
    """A second admin says yes: an extension moves its parent's end; a window that starts
    later waits for its start. True when the window is to be activated now (the caller
    does that on the controller; nothing is committed here)."""
    _decide(window, approver, "approved")
    window.decided_by, window.decided_at, window.decision_note = approver.username, utcnow(), note
    if window.extends_id is not None:
        _apply_extension(db, window, approver=approver, client=client)
        return False
    if window.starts_at is not None and window.starts_at > utcnow():
        window.state = WindowState.approved
        record(
            db,
            window,
            "approve",
            actor=approver.username,
            client=client,
            details={"window": window.id, "note": note, "starts_at": window.starts_at.isoformat()},
        )
        return False
    record(
        db,
        window,
        "approve",
        actor=approver.username,
        client=client,
        details={"window": window.id, "note": note},
    )
    return True


def check_activation(window: BreakglassWindow, *, admin: User) -> None:
    """Raise unless ``admin`` may start ``window`` now: an approved window, at or after its
    start time, by its approver only (the tokens are handed over by whoever approved)."""
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


def make_active(
    db: Session,
    window: BreakglassWindow,
    *,
    made: dict[str, Any],
    clock: BootClock,
    actor: str,
    client: str,
    enrollment_expires_at: dict[str, str],
) -> None:
    """The window is active from now, for its duration on both clocks, with the controller
    objects ``made`` for it; recorded, not committed."""
    now = utcnow()
    # A whole-second end: nftables' ``meta time`` compares whole seconds.
    ends_at = (now + timedelta(minutes=window.duration_minutes)).replace(microsecond=0)
    window.state = WindowState.active
    window.activated_at = now
    window.ends_at = ends_at
    window.boot_id = clock.boot_id
    window.deadline_boottime = clock.deadline((ends_at - now).total_seconds()).boottime
    window.ziti_objects = made
    record(
        db,
        window,
        "activate",
        actor=actor,
        client=client,
        details={
            "window": window.id,
            "ends_at": window.ends_at.isoformat(),
            "identities": made["identities"],
            "scope": window.scope,
            "enrollment_expires_at": enrollment_expires_at,
        },
    )


def _apply_extension(
    db: Session, extension: BreakglassWindow, *, approver: User, client: str
) -> None:
    parent = get_window(db, extension.extends_id or 0)
    if parent.state != WindowState.active or parent.ends_at is None:
        raise BreakglassConflictError(
            f"window {parent.id} is {parent.state.value}: it can no longer be extended"
        )
    seconds = extension.duration_minutes * 60
    parent.ends_at = parent.ends_at + timedelta(seconds=seconds)
    deadline = deadline_of(parent)
    if deadline is not None:
        parent.deadline_boottime = deadline.extended(seconds).boottime
    extension.state = WindowState.approved
    extension.activated_at = utcnow()
    record(
        db,
        parent,
        "extend",
        actor=approver.username,
        client=client,
        details={
            "window": parent.id,
            "extension": extension.id,
            "minutes": extension.duration_minutes,
            "ends_at": parent.ends_at.isoformat(),
        },
    )


# --- ending ---------------------------------------------------------------------------


def end(
    db: Session,
    window: BreakglassWindow,
    *,
    how: Literal["expired", "revoked"],
    actor: str,
    reason: str,
    client: str,
) -> None:
    """Decide an active window's end and commit it with its record (and the end of its
    pending extensions), before any controller work."""
    if window.state != WindowState.active:
        raise BreakglassConflictError(
            f"window {window.id} is {window.state.value}: only an active window can end"
        )
    window.state = _ENDED[how]
    window.ended_at, window.ended_by, window.end_reason = utcnow(), actor, reason
    record(
        db,
        window,
        "expire" if how == "expired" else "revoke",
        actor=actor,
        client=client,
        details={"window": window.id, "reason": reason, "ends_at": _iso(window.ends_at)},
    )
    _close_extensions(db, window, actor=actor, client=client)
    db.commit()  # the decision is durable before any controller work


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
        record(
            db,
            ext,
            "expire",
            actor=actor,
            client=client,
            details={"window": ext.id, "reason": "its window ended"},
        )


def seal(db: Session, *, admin: User, client: str) -> list[int]:
    """End every window at once: pending ones denied, active ones revoked; every end is
    decided and committed, the cleanups on the controller are the caller's to finish."""
    record_seal(db, actor=admin.username, client=client)
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
        record(
            db,
            window,
            "deny",
            actor=admin.username,
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
        end(db, window, how="revoked", actor=admin.username, reason="site sealed", client=client)
        ended.append(window.id)
    return ended


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
