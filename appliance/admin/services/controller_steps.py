"""One call to the controller, audited when it fails: how identities and grants call it.

The controller acts first; the database row and its audit record are committed after.
A call that fails changed nothing here, but the attempt is recorded (committed) before
the error goes on to the caller.

A call to the controller can take seconds (a busy or unreachable controller, retries),
and on SQLite a transaction holds the database's one write lock from its start: so the
read-only transaction a request has open by then is ended before the call, and every
other writer (the other admins, the reaper, the audit log's checkpoints) goes on while
the controller thinks. Rows read before it are read again when next touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from appliance.audit.record import record_event
from appliance.db.engine import has_written
from appliance.ziti.errors import ZitiError

__all__ = ["controller_step"]

_T = TypeVar("_T")


def controller_step(
    db: Session, actor: str, client: str, action: str, target: str, step: Callable[[], _T]
) -> _T:
    """Run one controller call; on failure audit the attempt (committed) and re-raise."""
    if not has_written(db):
        db.rollback()  # nothing to lose: only reads so far; releases SQLite's write lock
    try:
        return step()
    except ZitiError as exc:
        db.rollback()
        record_event(
            db,
            actor=actor,
            action=action,
            target=target,
            outcome="error",
            client=client,
            details={"error": str(exc)[:500]},
        )
        db.commit()
        raise
