"""A sealed recording's record in the audit log: its manifest's sha256, in its window.

The manifest is signed, but a signature alone would not show that a recording is missing
or was swapped for another one of the same window. The audit log's chain does: each
sealed recording is a record (``breakglass.recording``) with the window's target, so the
window's evidence export lists every session recorded and the digest of its manifest.
The admin service calls :func:`record_recording` in its own transaction;
:func:`recorded_sessions` reads a window's records back (its evidence export, its pages).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.audit.recordings.carried import RecordedSession
from appliance.breakglass.errors import BreakglassConflictError, BreakglassNotFoundError
from appliance.breakglass.recording.interface import SealedRecording, SessionInfo
from appliance.breakglass.records import record
from appliance.db.models import AuditEvent, BreakglassWindow

__all__ = ["ACTION", "record_recording", "recorded_sessions"]

#: The record's action, as ``breakglass.ACTION``.
ACTION = "recording"


def record_recording(db: Session, info: SessionInfo, sealed: SealedRecording) -> None:
    """Append the record of ``sealed`` (the session ``info``) to the log in ``db``'s
    transaction; the caller commits. The actor is the engineer (``vendor:NAME``)."""
    window = db.get(BreakglassWindow, info.window_id)
    if window is None:
        raise BreakglassNotFoundError(
            f"no window {info.window_id} to record session {info.session_id} in"
        )
    if info.engineer not in window.engineers:
        raise BreakglassConflictError(
            f"window {info.window_id} names engineers {window.engineers}, not "
            f"{info.engineer!r} whose session {info.session_id} was recorded"
        )
    record(
        db,
        window,
        ACTION,
        actor=f"vendor:{info.engineer}",
        details={
            "window_id": info.window_id,
            "session_id": info.session_id,
            "engineer": info.engineer,
            "host": info.host,
            "manifest_sha256": sealed.manifest_sha256,
            "chunks": sealed.chunks,
            "end_reason": sealed.end_reason,
            "folder": sealed.path.name,
        },
    )


def recorded_sessions(db: Session, target: str) -> list[RecordedSession]:
    """The sealed recordings the audit log names for the window whose target is ``target``
    (``window:ID``; an extension's sessions are its parent's), oldest first."""
    rows = db.execute(
        select(AuditEvent.seq, AuditEvent.details)
        .where(AuditEvent.action == f"breakglass.{ACTION}", AuditEvent.target == target)
        .order_by(AuditEvent.seq)
    )
    return [RecordedSession.of(seq, details) for seq, details in rows]
