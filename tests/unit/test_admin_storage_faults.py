"""Storage faults named for the one who must act: a full disk and a held database are
told apart from any other error, also under the wrappers SQLAlchemy puts around them."""

from __future__ import annotations

import errno
import logging
import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from appliance.admin.storage_faults import log_watch_failure, storage_fault


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
