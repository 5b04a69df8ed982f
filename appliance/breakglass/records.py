"""A window's audit records: one target per window, so its evidence is one export.

Every record about a window has the target ``window:ID``; an extension's records go to
the window it extends. The window's evidence (``GET /api/v1/breakglass/windows/ID/
evidence``) is the export of that target, and the controller's events about the
window's identities (:mod:`appliance.breakglass.events`) carry it too.

Actions (all ``breakglass.*``): ``request``, ``extend-request``, ``approve``, ``deny``,
``withdraw``, ``extend``, ``activate``, ``expire``, ``revoke``, ``end-confirmed`` (the
cleanup on the controller, with the time from decision to confirmation) and ``seal``
(target ``site``); the controller's events add ``circuit``, ``session`` and ``login``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from appliance.audit.record import record_event
from appliance.db.models import BreakglassWindow

__all__ = ["record", "record_seal", "target_of", "window_target"]


def window_target(window_id: int) -> str:
    """The audit target of every record about window ``window_id``."""
    return f"window:{window_id}"


def target_of(window: BreakglassWindow) -> str:
    """The audit target of every record about ``window``: its own, or for an extension
    the target of the window it extends."""
    return window_target(window.extends_id if window.extends_id is not None else window.id)


def record(
    db: Session,
    window: BreakglassWindow,
    action: str,
    *,
    actor: str,
    client: str = "",
    outcome: str = "ok",
    details: dict[str, Any],
) -> None:
    """Record ``breakglass.ACTION`` about ``window`` in the caller's transaction."""
    record_event(
        db,
        actor=actor,
        action=f"breakglass.{action}",
        target=target_of(window),
        outcome=outcome,
        client=client,
        details=details,
    )


def record_seal(db: Session, *, actor: str, client: str) -> None:
    """Record that ``actor`` sealed the site (target ``site``: every window at once)."""
    record_event(db, actor=actor, action="breakglass.seal", target="site", client=client)
