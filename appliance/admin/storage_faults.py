"""Faults of the admin host's storage, said for the one who must act on them.

A full disk or a database held past its timeout is not a defect of the admin service:
its answer names the fault and what to do, where any other unexpected error gets a
reference to its traceback. Apart so that the request's session (deps) and the app's
error handlers both use it.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

__all__ = ["StorageFault", "log_watch_failure", "storage_fault"]


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
