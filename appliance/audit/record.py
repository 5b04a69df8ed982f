"""The one function that records an audit event.

Every admin-service action (and, later, installer runs and controller events) goes
through ``record_event``, in the same transaction as the change it describes, so a change
is never committed without its record. The audit-log issue makes this log hash-chained
and signed; callers do not change.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from appliance.db.models import AuditEvent

__all__ = ["record_event"]


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str = "",
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
    client: str = "",
) -> AuditEvent:
    """Add an audit event to ``session`` (committed with the caller's change)."""
    event = AuditEvent(
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        details=details or {},
        client=client,
    )
    session.add(event)
    session.flush()
    return event
