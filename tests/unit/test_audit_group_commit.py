"""Issue 15: the batching audit writer. Many callers, one chain; a record is handed back
only once its batch committed; nothing is acknowledged that a failed commit lost."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from appliance.audit.check import check_log
from appliance.audit.checkpoint import load_or_create_key
from appliance.audit.format import GENESIS, Record, record_hash
from appliance.audit.group_commit import AuditWriter, AuditWriterClosedError
from appliance.audit.record import record_event
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    return engine


def rows(engine: Engine) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_concurrent_callers_make_one_chain(engine: Engine, tmp_path: Path) -> None:
    returned: list[Record] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        for i in range(50):
            record = writer.append(actor=f"c{n}", action="t.x", target=f"{n}-{i}")
            with lock:
                returned.append(record)

    with AuditWriter(engine) as writer:
        threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stored = rows(engine)
    assert [r.seq for r in stored] == list(range(1, 401))
    assert sorted((r.seq, r.hash) for r in returned) == [(r.seq, r.hash) for r in stored]
    assert all(record_hash(r) == r.hash for r in returned)
    assert len({r.at for r in stored}) < 400  # commits held several records
    with Session(engine) as session:
        assert check_log(session, load_or_create_key(tmp_path).public_key()).records == 400


def test_batched_and_transactional_appends_share_the_head(engine: Engine, tmp_path: Path) -> None:
    with AuditWriter(engine) as writer:
        first = writer.append(actor="a", action="t.batched")
        with Session(engine) as session:
            record_event(session, actor="b", action="t.single")
            session.commit()
        third = writer.append(actor="a", action="t.batched", details={"n": "ü"})
    stored = rows(engine)
    assert [(r.seq, r.action) for r in stored] == [
        (1, "t.batched"),
        (2, "t.single"),
        (3, "t.batched"),
    ]
    assert first.prev_hash == GENESIS and third.prev_hash == stored[1].hash
    with Session(engine) as session:
        assert check_log(session, load_or_create_key(tmp_path).public_key()).records == 3


def test_close_commits_what_was_submitted_and_refuses_more(engine: Engine) -> None:
    writer = AuditWriter(engine)
    futures = [writer.submit(actor="a", action="t.x", target=str(i)) for i in range(100)]
    writer.close()
    assert [f.result().seq for f in futures] == list(range(1, 101))
    with pytest.raises(AuditWriterClosedError, match="closed: nothing was recorded"):
        writer.submit(actor="a", action="t.late")
    assert len(rows(engine)) == 100


def test_details_json_cannot_hold_are_refused_to_their_caller_alone(engine: Engine) -> None:
    with AuditWriter(engine) as writer:
        with pytest.raises(TypeError):
            writer.submit(actor="a", action="t.x", details={"bad": {1, 2}})
        assert writer.append(actor="a", action="t.x").seq == 1
    assert len(rows(engine)) == 1


def test_a_failed_commit_acknowledges_nothing(tmp_path: Path) -> None:
    unmigrated = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with AuditWriter(unmigrated) as writer:
        futures = [writer.submit(actor="a", action="t.x") for _ in range(5)]
        for future in futures:
            with pytest.raises(OperationalError, match="no such table"):
                future.result()
