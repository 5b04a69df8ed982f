"""A call to the controller never holds SQLite's write lock: while the controller thinks,
another writer (another admin, the reaper, a checkpoint) goes on. A transaction that has
written is kept whole, and the failure of a call is still audited."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.services.controller_steps import controller_step
from appliance.audit.record import record_event
from appliance.db import engine
from appliance.db.engine import has_written
from appliance.db.models import AuditEvent, Identity
from appliance.ziti.errors import ZitiError


def _another_writer(tmp_path: Path) -> str:
    """What a second writer gets from the database within 0.2 s: 'written' or the error."""
    other = sqlite3.connect(tmp_path / "admin.db", timeout=0.2, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return "written"
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        other.close()


def test_a_transaction_that_only_read_is_ended_before_the_controller_is_asked(
    db: Session, tmp_path: Path
) -> None:
    db.scalars(select(Identity)).all()  # a request's reads: SQLite's write lock taken
    assert _another_writer(tmp_path) == "database is locked"
    assert controller_step(db, "a", "", "x", "y", lambda: _another_writer(tmp_path)) == "written"


def test_a_transaction_that_wrote_is_kept_whole_across_the_call(
    db: Session, tmp_path: Path
) -> None:
    record_event(db, actor="a", action="before", target="t")  # flushed, not committed
    assert has_written(db)
    said = controller_step(db, "a", "", "x", "y", lambda: _another_writer(tmp_path))
    assert said == "database is locked"  # still this transaction's: nothing was dropped
    db.commit()
    assert not has_written(db)
    assert [e.action for e in db.scalars(select(AuditEvent))] == ["before"]


def test_a_failed_call_is_still_audited(db: Session) -> None:
    def refused() -> None:
        raise ZitiError("controller unreachable")

    db.scalars(select(Identity)).all()
    with pytest.raises(ZitiError):
        controller_step(db, "admin", "10.0.0.1", "identity.create", "alice", refused)
    [event] = db.scalars(select(AuditEvent)).all()
    assert (event.action, event.target, event.outcome) == ("identity.create", "alice", "error")


def test_a_write_transaction_held_long_is_logged_with_where_it_began(
    db: Session, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(engine, "SLOW_WRITE_S", 0.0)
    db.scalars(select(Identity)).all()
    db.rollback()
    [warning] = [r for r in caplog.records if r.name == "appliance.db"]
    assert "held the database" in warning.getMessage()
    assert "tests/unit/test_controller_steps.py" not in warning.getMessage()  # ours only
    assert "outside the appliance's code" in warning.getMessage()
