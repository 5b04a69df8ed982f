"""Faults of the admin host's storage, said for the one who must act on them.

A full disk or a database held past its timeout is not a defect of the admin service:
its answer names the fault and what to do, where any other unexpected error gets a
reference to its traceback. Apart so that the request's session (deps) and the app's
error handlers both use it.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from appliance.audit.record import record_event
from appliance.db.models import utcnow

__all__ = ["StorageFault", "StorageRefusals", "log_watch_failure", "storage_fault"]


@dataclass(frozen=True)
class StorageFault:
    """What the admin host's storage refused, said for the one who must act on it."""

    status: int
    code: str
    message: str
    hint: str


#: SQLite's and PostgreSQL's words for a full disk (SQLITE_FULL; SQLSTATE 53100).
_FULL = ("database or disk is full", "no space left on device", "could not extend file")


def storage_fault(exc: BaseException) -> StorageFault | None:
    """The fault of the admin host's storage behind ``exc`` (a full disk, a database held
    by another writer past its timeout), or None for any other error."""
    cause: BaseException | None = exc
    while cause is not None:
        words = str(cause).lower()
        if (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or any(
            w in words for w in _FULL
        ):
            return StorageFault(
                507,
                "DiskFull",
                "the admin host's disk is full, so this request could not be recorded; it "
                "was not acknowledged (what was recorded before is intact)",
                "free space where the admin service keeps its data (df -h "
                "/var/lib/appliance-admin on the admin host), then look before trying again",
            )
        if "database is locked" in words:
            return StorageFault(
                503,
                "DatabaseBusy",
                "the admin database stayed held by another writer; this request was not "
                "carried out",
                "try again in a few seconds; if it lasts, journalctl -u appliance-admin "
                "names the writer that holds it",
            )
        cause = getattr(cause, "orig", None) or cause.__cause__
    return None


def log_watch_failure(log: logging.Logger, watch: str, exc: BaseException) -> None:
    """A background watch's pass failed: a storage fault is named in one line (it comes
    back every pass until space returns, and its cause is known), anything else with its
    traceback."""
    fault = storage_fault(exc)
    if fault is None:
        log.error("%s failed", watch, exc_info=exc)
    else:
        log.warning("%s: %s; will try again next pass (%s)", watch, fault.code, fault.hint)


@dataclass
class _Spell:
    first: datetime
    last: datetime
    refused: int = field(default=0)


class StorageRefusals:
    """Requests the host's storage refused, kept in memory while the database cannot take
    them, then written as one audit record per fault: `storage.refused` (target `site`),
    with how many were refused, the first and the last. So a full disk leaves its trace in
    the log once space returns, although nothing it refused was stored."""

    def __init__(self, now: Callable[[], datetime] = utcnow) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._spells: dict[str, _Spell] = {}

    def refused(self, fault: StorageFault) -> None:
        """One request was refused for ``fault``."""
        at = self._now()
        with self._lock:
            spell = self._spells.setdefault(fault.code, _Spell(at, at))
            spell.last = at
            spell.refused += 1

    def record(self, sessions: sessionmaker[Session]) -> None:
        """Write what was refused since the last record; kept for the next try when the
        storage still refuses (the caller logs that)."""
        with self._lock:
            spells, self._spells = self._spells, {}
        if not spells:
            return
        try:
            with sessions() as db:
                for code, spell in sorted(spells.items()):
                    record_event(
                        db,
                        actor="admin-service",
                        action="storage.refused",
                        target="site",
                        outcome="refused",
                        details={
                            "fault": code,
                            "refused": spell.refused,
                            "first": spell.first.isoformat(),
                            "last": spell.last.isoformat(),
                        },
                    )
                db.commit()
        except BaseException:
            with self._lock:  # put back, merged with what was refused meanwhile
                for code, spell in spells.items():
                    newer = self._spells.get(code)
                    if newer is not None:
                        spell.last, spell.refused = newer.last, spell.refused + newer.refused
                    self._spells[code] = spell
            raise
