"""An integrity check of the live log asked for by a person: run it now, and record it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from appliance.admin.audit_watch import AuditStatus, AuditWatch
from appliance.audit.record import record_event

__all__ = ["check_now"]


def check_now(db: Session, watch: AuditWatch, *, actor: str, client: str) -> AuditStatus:
    """Check the whole log now, as the watch does on its schedule; record who asked and
    what it found (``audit.check``, outcome ``ok`` or ``failed``).

    Ends ``db``'s transaction first: the check reads in its own, and on SQLite a
    transaction holds the write lock from its start.
    """
    db.commit()
    status = watch.check_now()
    details: dict[str, object] = (
        {"records": status.records, "checkpoints": status.checkpoints}
        if status.ok
        else {"message": status.message[:1000]}
    )
    record_event(
        db,
        actor=actor,
        action="audit.check",
        outcome="ok" if status.ok else "failed",
        client=client,
        details=details,
    )
    return status
