"""Storage faults named for the one who must act: a full disk and a held database are
told apart from any other error, also under the wrappers SQLAlchemy puts around them;
what they refused is audited once the storage takes writes again."""

from __future__ import annotations

import errno
import logging
import sqlite3
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from appliance.admin.storage_faults import (
    StorageFault,
    StorageRefusals,
    log_watch_failure,
    storage_fault,
)
from appliance.db.models import AuditEvent


def _wrapped(message: str) -> OperationalError:
    return OperationalError("INSERT INTO audit_events ...", {}, sqlite3.OperationalError(message))


def test_a_full_disk_and_a_held_database_are_named_and_other_errors_are_not() -> None:
    full = storage_fault(_wrapped("database or disk is full"))
    assert full is not None and (full.status, full.code) == (507, "DiskFull")
    assert storage_fault(OSError(errno.ENOSPC, "No space left on device")) == full
    busy = storage_fault(_wrapped("database is locked"))
    assert busy is not None and (busy.status, busy.code) == (503, "DatabaseBusy")
    assert storage_fault(ValueError("a bug")) is None


def test_a_watch_logs_a_storage_fault_in_one_line_and_anything_else_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.watch")
    with caplog.at_level(logging.WARNING, logger="test.watch"):
        log_watch_failure(log, "audit watch", _wrapped("database or disk is full"))
        try:
            raise KeyError("unexpected")
        except KeyError as exc:
            log_watch_failure(log, "identity watch", exc)
    full, other = caplog.records
    assert full.levelno == logging.WARNING and full.exc_info is None
    assert full.getMessage().startswith("audit watch: DiskFull; will try again next pass")
    assert "df -h /var/lib/appliance-admin" in full.getMessage()
    assert other.levelno == logging.ERROR and other.getMessage() == "identity watch failed"
    assert other.exc_info is not None and other.exc_info[0] is KeyError


def _full() -> StorageFault:
    fault = storage_fault(_wrapped("database or disk is full"))
    assert fault is not None
    return fault


def test_what_a_full_disk_refused_is_audited_once_space_returns(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = sessionmaker(db.get_bind(), expire_on_commit=False)
    ticks = iter(datetime(2026, 12, 8, 3, 0, s, tzinfo=UTC) for s in range(60))
    refusals = StorageRefusals(now=lambda: next(ticks))
    refusals.refused(_full())
    refusals.refused(_full())

    def still_full(_session: Session) -> None:
        raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(Session, "commit", still_full)
    with pytest.raises(OperationalError):
        refusals.record(sessions)  # the disk is still full: nothing lost, kept for later
    refusals.refused(_full())  # refused while the record was being tried
    monkeypatch.undo()
    refusals.record(sessions)
    refusals.record(sessions)  # nothing new: no second record
    (event,) = db.scalars(select(AuditEvent).where(AuditEvent.action == "storage.refused"))
    assert (event.actor, event.target, event.outcome) == ("admin-service", "site", "refused")
    assert event.details == {
        "fault": "DiskFull",
        "refused": 3,
        "first": "2026-12-08T03:00:00+00:00",
        "last": "2026-12-08T03:00:02+00:00",
    }
