"""What the vendor's engineers actually did: the controller's event stream, into the audit log.

The controller writes its events as JSON lines to a file (its ``events: jsonLogger``
handler, ``type: file``, in the controller's configuration; the admin settings'
``controller_events_file`` names it). The reaper reads the
lines it has not read yet, keeps those about break-glass identities (logins, service
sessions, circuits: what each engineer connected to, when, for how long) and records
each as an audit record of its window (target ``window:ID``), so the window's evidence
export carries them and ``appliance audit verify`` checks them.

Nothing is lost or recorded twice: every record carries the position just after its line
(``source: {inode, offset}``), committed with it, and a restarted reader resumes after the
last one. A file the controller rotated is finished before the new one is read; one that
was removed before it could be read is recorded as a gap, never skipped silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.audit.record import record_event
from appliance.breakglass.records import window_target
from appliance.db.models import AuditEvent, BreakglassWindow

__all__ = ["ACTIONS", "GAP_ACTION", "Cursor", "EventIngester"]

log = logging.getLogger("appliance.breakglass.events")

#: Controller event namespaces we keep, and the audit action each becomes.
ACTIONS = {
    "circuit": "breakglass.circuit",
    "session": "breakglass.session",
    "apiSession": "breakglass.login",
}
GAP_ACTION = "breakglass.events-gap"
#: The most bytes one pass reads (the rest waits for the next tick).
_MAX_BATCH = 4 << 20


@dataclass(frozen=True)
class Cursor:
    """A position in the controller's event file: which file and where in it.

    A file is known by its inode and the digest of its first line: an inode number can
    be reused by the next file once the old one is removed.
    """

    inode: int
    offset: int
    head: str = ""


@dataclass(frozen=True)
class _Vendor:
    window: int
    engineer: str
    services: dict[str, str]


class EventIngester:
    """Reads the controller's event file into the audit log, one pass at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cursor: Cursor | None = None

    def ingest(self, db: Session) -> int:
        """Record every new event of a break-glass identity; how many were recorded."""
        if self._cursor is None:
            self._cursor = _last_cursor(db)
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return 0  # the controller has written no event yet
        recorded = 0
        cursor = self._cursor
        if cursor is not None and not _same_file(self.path, stat.st_ino, cursor):
            rotated = _find_file(self.path.parent, cursor)
            if rotated is not None:
                recorded += self._read(db, rotated, cursor)
                if self._cursor is not None and self._cursor.offset < rotated.stat().st_size:
                    return recorded  # more of the old file than one pass reads: finish it first
            else:
                record_event(
                    db,
                    actor="reaper",
                    action=GAP_ACTION,
                    target="controller-events",
                    outcome="error",
                    details={
                        "file": str(self.path),
                        "lost_after": _source(cursor),
                        "why": "the controller's event file was rotated away before it was read",
                    },
                )
                db.commit()
                log.error("controller event file %s rotated away unread", self.path)
            cursor = None
        if cursor is not None and stat.st_size < cursor.offset:
            cursor = None  # truncated in place: start again at its beginning
        start = cursor or Cursor(stat.st_ino, 0, _head(self.path))
        recorded += self._read(db, self.path, start)
        return recorded

    def _read(self, db: Session, path: Path, cursor: Cursor) -> int:
        with path.open("rb") as handle:
            inode = os.fstat(handle.fileno()).st_ino
            handle.seek(cursor.offset)
            chunk = handle.read(_MAX_BATCH)
        head = cursor.head or _head(path)
        end = chunk.rfind(b"\n")
        if end < 0:
            self._cursor = Cursor(inode, cursor.offset, head)
            return 0
        vendors = _vendor_identities(db)  # read after the lines: see the module docstring
        offset = cursor.offset
        recorded = 0
        for line in chunk[: end + 1].splitlines(keepends=True):
            offset += len(line)
            event = _parse(line)
            if event is None:
                continue
            who = vendors.get(_identity_of(event))
            action = ACTIONS.get(str(event.get("namespace")))
            if who is None or action is None:
                continue
            _record(db, action, who, event, Cursor(inode, offset, head))
            recorded += 1
        db.commit()
        self._cursor = Cursor(inode, offset, head)
        return recorded


def _record(db: Session, action: str, who: _Vendor, event: dict[str, Any], at: Cursor) -> None:
    kind = str(event.get("event_type", ""))
    service_id = str(event.get("service_id") or "")
    details: dict[str, Any] = {
        "event": kind,
        "at": event.get("timestamp"),
        "identity": _identity_of(event),
        "source": _source(at),
    }
    if service_id:
        details["service"] = who.services.get(service_id, service_id)
    for field in ("circuit_id", "session_type", "id", "failure_cause"):
        if event.get(field):
            details[field] = event[field]
    if isinstance(event.get("duration"), int | float):
        details["duration_ms"] = round(float(event["duration"]) / 1e6, 3)  # Go: nanoseconds
    record_event(
        db,
        actor=f"vendor:{who.engineer}",
        action=action,
        target=window_target(who.window),
        outcome="error" if kind == "failed" else "ok",
        details=details,
    )


def _identity_of(event: dict[str, Any]) -> str:
    return str(event.get("client_id") or event.get("identity_id") or "")


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        log.warning("skipping a controller event line that is not JSON: %r", line[:80])
        return None
    return value if isinstance(value, dict) else None


def _vendor_identities(db: Session) -> dict[str, _Vendor]:
    """Every break-glass identity the windows ever made, by controller id."""
    found: dict[str, _Vendor] = {}
    for window in db.scalars(select(BreakglassWindow)):
        made = window.ziti_objects or {}
        services = dict(made.get("services") or {})
        for engineer, ziti_id in (made.get("identities") or {}).items():
            found[str(ziti_id)] = _Vendor(window.extends_id or window.id, engineer, services)
    return found


def _last_cursor(db: Session) -> Cursor | None:
    """Where the last recorded event ended, from the log itself."""
    last = db.scalar(
        select(AuditEvent)
        .where(AuditEvent.action.in_(list(ACTIONS.values())))
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    source = (last.details or {}).get("source") if last is not None else None
    if not isinstance(source, dict):
        return None
    return Cursor(int(source["inode"]), int(source["offset"]), str(source.get("head", "")))


def _source(cursor: Cursor) -> dict[str, Any]:
    return {"inode": cursor.inode, "offset": cursor.offset, "head": cursor.head}


def _head(path: Path) -> str:
    """The sha256 of the file's first complete line ("" while it has none)."""
    with path.open("rb") as handle:
        first = handle.readline(1 << 20)
    return hashlib.sha256(first).hexdigest() if first.endswith(b"\n") else ""


def _same_file(path: Path, inode: int, cursor: Cursor) -> bool:
    return inode == cursor.inode and (not cursor.head or _head(path) == cursor.head)


def _find_file(folder: Path, cursor: Cursor) -> Path | None:
    """The file the cursor was in, under the name rotation gave it."""
    for entry in folder.iterdir():
        try:
            if entry.is_file() and _same_file(entry, entry.stat().st_ino, cursor):
                return entry
        except OSError:
            continue
    return None
