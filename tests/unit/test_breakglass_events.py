"""The controller's event file into the audit log: only the vendor's, each once, none lost.

The file is written here the way the controller's `events: jsonLogger` file handler writes
it (one JSON object a line, appended, rotated by renaming); the real controller's events
are ingested in tests/integration/test_breakglass_live.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.audit.check import to_record
from appliance.audit.format import GENESIS, record_hash
from appliance.breakglass.events import GAP_ACTION, EventIngester
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent
from appliance.lab.windows import add_active_window


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Session]:
    with Session(make_engine(db_url), expire_on_commit=False) as session:
        yield session


def circuit(kind: str, client: str, n: int, **extra: object) -> dict[str, object]:
    return {
        "namespace": "circuit",
        "event_type": kind,
        "circuit_id": f"c{n}",
        "client_id": client,
        "service_id": "svc-echo",
        "timestamp": f"2026-11-28T10:00:{n:02d}Z",
        **extra,
    }


def write(path: Path, *events: dict[str, object], partial: str = "") -> None:
    with path.open("a") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")
        handle.write(partial)


def recorded(db: Session) -> list[AuditEvent]:
    return list(
        db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.like("breakglass.%"))
            .where(AuditEvent.action != "breakglass.activate")
            .order_by(AuditEvent.seq)
        )
    )


def vendor_window(db_url: str) -> int:
    return add_active_window(
        db_url,
        1800,
        ziti_objects={"identities": {"eve": "z-eve"}, "services": {"svc-echo": "echo"}},
    )


def test_only_the_vendors_events_are_recorded_in_their_window(
    db: Session, db_url: str, tmp_path: Path
) -> None:
    wid = vendor_window(db_url)
    log = tmp_path / "events.jsonl"
    write(
        log,
        circuit("created", "z-eve", 1),
        circuit("created", "z-staff", 2),  # a site user: none of the vendor's evidence
        {"namespace": "metrics", "source_id": "r1"},
        circuit("deleted", "z-eve", 3, duration=1_500_000_000),
        {"namespace": "apiSession", "event_type": "created", "identity_id": "z-eve", "id": "a1"},
    )
    assert EventIngester(log).ingest(db) == 3
    rows = recorded(db)
    assert [(r.action, r.actor, r.target) for r in rows] == [
        ("breakglass.circuit", "vendor:eve", f"window:{wid}"),
        ("breakglass.circuit", "vendor:eve", f"window:{wid}"),
        ("breakglass.login", "vendor:eve", f"window:{wid}"),
    ]
    assert rows[0].details["service"] == "echo"
    assert rows[1].details["duration_ms"] == 1500.0
    # The chain still holds: each record's hash is its own, linked to the one before.
    previous = GENESIS
    for row in db.scalars(select(AuditEvent).order_by(AuditEvent.seq)):
        assert row.prev_hash == previous
        assert record_hash(to_record(row)) == row.hash
        previous = row.hash


def test_a_restarted_reader_records_nothing_twice_and_waits_for_a_whole_line(
    db: Session, db_url: str, tmp_path: Path
) -> None:
    vendor_window(db_url)
    log = tmp_path / "events.jsonl"
    write(log, circuit("created", "z-eve", 1), partial='{"namespace": "circ')
    assert EventIngester(log).ingest(db) == 1
    # A new process (the reaper restarted) resumes after the last recorded event.
    reader = EventIngester(log)
    assert reader.ingest(db) == 0
    with log.open("a") as handle:
        handle.write('uit", "event_type": "deleted", "client_id": "z-eve", "circuit_id": "c1"}\n')
    assert reader.ingest(db) == 1
    assert [r.details["event"] for r in recorded(db)] == ["created", "deleted"]


def test_a_rotated_file_is_finished_before_the_new_one(
    db: Session, db_url: str, tmp_path: Path
) -> None:
    vendor_window(db_url)
    log = tmp_path / "events.jsonl"
    write(log, circuit("created", "z-eve", 1))
    reader = EventIngester(log)
    assert reader.ingest(db) == 1
    write(log, circuit("created", "z-eve", 2))  # written, then the file rotates unread
    log.rename(tmp_path / "events-2026-11-28T10-00-05.jsonl")
    write(log, circuit("created", "z-eve", 3))
    assert reader.ingest(db) == 2
    assert [r.details["circuit_id"] for r in recorded(db)] == ["c1", "c2", "c3"]


def test_a_file_rotated_away_unread_is_recorded_as_a_gap(
    db: Session, db_url: str, tmp_path: Path
) -> None:
    vendor_window(db_url)
    log = tmp_path / "events.jsonl"
    write(log, circuit("created", "z-eve", 1))
    reader = EventIngester(log)
    reader.ingest(db)
    log.unlink()
    write(log, circuit("created", "z-eve", 2))
    assert reader.ingest(db) == 1
    gaps = db.scalars(select(AuditEvent).where(AuditEvent.action == GAP_ACTION)).all()
    assert len(gaps) == 1 and gaps[0].outcome == "error"
    assert "rotated away before it was read" in gaps[0].details["why"]


def test_a_long_rotated_file_is_finished_over_several_passes_before_the_new_one(
    db: Session, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("appliance.breakglass.events._MAX_BATCH", 400)  # about two lines a pass
    vendor_window(db_url)
    log = tmp_path / "events.jsonl"
    write(log, circuit("created", "z-eve", 1))
    reader = EventIngester(log)
    assert reader.ingest(db) == 1
    write(log, *(circuit("created", "z-eve", n) for n in range(2, 9)))
    log.rename(tmp_path / "events-old.jsonl")
    write(log, circuit("created", "z-eve", 9))
    for _ in range(10):
        reader.ingest(db)
    assert [r.details["circuit_id"] for r in recorded(db)] == [f"c{n}" for n in range(1, 10)]
