"""The tamper-evident audit log: exports that verify offline, and every tamper named.

Real SQLite databases and the real CLI; a kill -9 of writers in the middle of a burst.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import distinct, func, select, text
from sqlalchemy.orm import Session

from appliance.audit.check import check_log
from appliance.audit.checkpoint import AuditIntegrityError, load_or_create_key, make_checkpoint
from appliance.audit.record import record_event
from appliance.audit.verify import verify_export
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent
from tests.integration.audit_logs import (
    REPO,
    audit_cli,
    export,
    joined,
    lines,
    new_log,
    rewrite,
)
from tests.integration.databases import postgres_cluster


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, str, Path]:
    url = new_log(tmp_path)
    return tmp_path, url, export(tmp_path, url)


def test_export_verifies_offline_with_the_cli(log: tuple[Path, str, Path]) -> None:
    _, _, archive = log
    result = audit_cli("verify", str(archive))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: records 1..10 are complete and unaltered (10 records")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == [
            "README.txt",
            "audit-public-key.pem",
            "checkpoint.json",
            "proofs.json",
            "records.jsonl",
        ]


def test_installer_events_are_appended_once_and_chain(tmp_path: Path) -> None:
    url = new_log(tmp_path, records=2)
    events = [
        {
            "event_id": "run-1",
            "actor": "installer@ws1",
            "action": "installer.install",
            "target": "lab 2026.11.1",
            "outcome": "ok",
            "details": {"changed": 40},
        }
    ]

    def append(stdin: str) -> subprocess.CompletedProcess[str]:
        return audit_cli("append", "--db", url, data_dir=tmp_path, stdin=stdin)

    first = append(json.dumps(events))
    assert first.returncode == 0, first.stderr
    assert "appended 1 events (0 were already in the log)" in first.stdout
    again = append(json.dumps(events))  # a sender retrying after a lost answer
    assert "appended 0 events (1 were already in the log)" in again.stdout
    bad = append('{"action": "x"}')
    assert bad.returncode != 0 and "not a list of events" in bad.stderr
    with Session(make_engine(url)) as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert [r.action for r in rows][-1] == "installer.install"
        assert rows[-1].details == {"changed": 40, "event_id": "run-1"}
        assert check_log(session, load_or_create_key(tmp_path).public_key()).records == 3


def test_records_made_after_a_snapshot_are_carried_into_the_restored_log(
    tmp_path: Path,
) -> None:
    live = new_log(tmp_path, records=4)
    snapshot = tmp_path / "snapshot.db"
    for suffix in ("", "-wal", "-shm"):  # before the upgrade, as tar takes the folder
        if (tmp_path / f"admin.db{suffix}").exists():
            (tmp_path / f"snapshot.db{suffix}").write_bytes(
                (tmp_path / f"admin.db{suffix}").read_bytes()
            )
    with Session(make_engine(live)) as session:
        for i in range(3):
            record_event(session, actor="bob", action="identity.create", target=f"after{i}")
            session.commit()
    key = load_or_create_key(tmp_path)
    with Session(make_engine(live)) as session:
        make_checkpoint(session, key)
        session.commit()
    restored = f"sqlite:///{snapshot}"

    def carry() -> subprocess.CompletedProcess[str]:
        return audit_cli(
            "carry", "--from-db", live, data_dir=tmp_path, APPLIANCE_ADMIN_DB_URL=restored
        )

    done = carry()
    assert done.returncode == 0, done.stderr
    assert "carried 3 records" in done.stdout
    assert "carried 0 records" in carry().stdout  # a rerun of the restore adds nothing
    with Session(make_engine(restored)) as session:
        result = check_log(session, key.public_key())
    assert (result.records, result.checkpoints) == (7, 1)

    # A restored log that went its own way is not silently merged.
    with Session(make_engine(restored)) as session:
        session.execute(text("DELETE FROM audit_events WHERE seq > 4"))
        session.execute(text("DELETE FROM audit_checkpoints"))
        session.execute(
            text(
                "UPDATE audit_head SET seq = 4, "
                "hash = (SELECT hash FROM audit_events WHERE seq = 4)"
            )
        )
        session.commit()
        record_event(session, actor="eve", action="auth.login", target="elsewhere")
        session.commit()
    diverged = carry()
    assert diverged.returncode != 0
    assert "diverge at record 5" in diverged.stderr


def test_csv_and_type_filter(tmp_path: Path) -> None:
    url = new_log(tmp_path)
    archive = export(tmp_path, url, types=["auth"], fmt="csv")
    summary = verify_export(archive)
    assert (summary.records, summary.omitted) == (10, 5)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            lambda rows: [{**r, "actor": "mallory"} if r["seq"] == 4 else r for r in rows],
            "record 4 (identity.create by mallory) was altered",
        ),
        (
            lambda rows: [r for r in rows if r["seq"] != 6],
            "record 6 is missing (deleted): record 7 comes after record 5",
        ),
        (
            lambda rows: [*rows[:2], rows[3], rows[2], *rows[4:]],
            "record 3 is out of order (reordered): record 4 comes before it",
        ),
        (
            lambda rows: rows[:7],
            "the export ends at record 7 but its proof covers records up to 10: "
            "records 8..10 were cut off",
        ),
    ],
    ids=["field edited", "record deleted", "records reordered", "tail truncated"],
)
def test_tampered_export_names_the_record(
    log: tuple[Path, str, Path], tamper: object, message: str
) -> None:
    _, _, archive = log
    rewrite(archive, "records.jsonl", lambda data: joined(tamper(lines(data))))  # type: ignore[operator]
    with pytest.raises(AuditIntegrityError, match=re.escape(message)):
        verify_export(archive)


def test_replaced_checkpoint_signature(log: tuple[Path, str, Path]) -> None:
    _, _, archive = log

    def forge(data: bytes) -> bytes:
        checkpoint = json.loads(data)
        checkpoint["signature"] = checkpoint["signature"][:-4] + "0000"
        return json.dumps(checkpoint).encode()

    rewrite(archive, "checkpoint.json", forge)
    with pytest.raises(AuditIntegrityError, match="the signature does not verify"):
        verify_export(archive)


def test_a_different_key_is_refused(log: tuple[Path, str, Path], tmp_path: Path) -> None:
    _, _, archive = log
    other = tmp_path / "other"
    other.mkdir()
    from appliance.audit.checkpoint import public_key_pem

    with pytest.raises(AuditIntegrityError, match="signed by key .* expected key"):
        verify_export(archive, key_pem=public_key_pem(load_or_create_key(other)))


def test_two_exports_spliced(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    a = export(first, new_log(first))
    b = export(second, new_log(second))
    with tarfile.open(b) as tar:
        theirs = lines(tar.extractfile("records.jsonl").read())  # type: ignore[union-attr]
    rewrite(a, "records.jsonl", lambda data: joined(lines(data)[:5] + theirs[5:]))
    with pytest.raises(AuditIntegrityError, match="record 6 does not follow record 5"):
        verify_export(a)


def test_consecutive_exports_are_linked(tmp_path: Path) -> None:
    url = new_log(tmp_path)
    older = export(tmp_path, url, "one.tar")
    with Session(make_engine(url)) as session:
        record_event(session, actor="bob", action="identity.delete", target="x")
        session.commit()
    newer = export(tmp_path, url, "two.tar")
    summary = verify_export(newer, previous=older)
    assert summary.previous_tree_size == 10
    with pytest.raises(AuditIntegrityError, match="is not the export before this one"):
        verify_export(older, previous=newer)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE audit_events SET target = 'other' WHERE seq = 3", "record 3 .* was altered"),
        ("DELETE FROM audit_events WHERE seq = 5", "record 5 is missing"),
        (
            "UPDATE audit_events SET seq = -3 WHERE seq = 3; UPDATE audit_events SET seq = 3 "
            "WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = -3",
            "record 2 does not follow record 1",
        ),
        ("DELETE FROM audit_events WHERE seq > 8", "records were removed from the end"),
    ],
    ids=["field edited", "record deleted", "records reordered", "tail truncated"],
)
def test_the_same_edits_in_the_database(tmp_path: Path, statement: str, message: str) -> None:
    url = new_log(tmp_path)
    export(tmp_path, url)  # leaves a signed checkpoint over all 10 records
    engine = make_engine(url)
    with engine.begin() as connection:
        for part in statement.split("; "):
            connection.execute(text(part))
    with Session(engine) as session, pytest.raises(AuditIntegrityError, match=message):
        check_log(session, load_or_create_key(tmp_path).public_key())
    result = audit_cli("check", "--db", url, data_dir=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr


#: A writer process: CALLERS threads append through the process's batching writer and
#: print each record's target once it is acknowledged (durable and chained); with
#: "single" it appends the old way instead, one record_event and commit at a time.
_WRITER = """
import sys, threading
from sqlalchemy.orm import Session
from appliance.audit.group_commit import AuditWriter
from appliance.audit.record import record_event
from appliance.db.engine import make_engine

url, name, mode = sys.argv[1:4]
engine = make_engine(url)
out = threading.Lock()

def acknowledged(target):
    with out:
        sys.stdout.write(target + "\\n")
        sys.stdout.flush()

def single():
    for i in range(10**6):
        with Session(engine) as s:
            record_event(s, actor=name, action="burst", target=f"{name}-{i}")
            s.commit()
        acknowledged(f"{name}-{i}")

def caller(writer, n):
    for i in range(10**6):
        writer.append(actor=name, action="burst", target=f"{name}-{n}-{i}")
        acknowledged(f"{name}-{n}-{i}")

if mode == "single":
    single()
else:
    writer = AuditWriter(engine)
    threads = [threading.Thread(target=caller, args=(writer, n)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated log with no record, on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        yield new_log(tmp_path, records=0)
        return
    with postgres_cluster() as url:
        upgrade(make_engine(url))
        yield url


def test_kill_9_during_a_burst_from_several_writers(tmp_path: Path, empty_log: str) -> None:
    """Issue 15: three processes append through their batching writers (eight callers
    each) beside one appending the old way; all are killed mid-burst. Every acknowledged
    record is there, once, and the log is one chain that verifies."""
    url = empty_log
    modes = ["batched", "batched", "batched", "single"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, url, f"w{n}", mode],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n, mode in enumerate(modes)
    ]
    engine = make_engine(url)
    deadline = time.monotonic() + 120
    # Kill under load: once the log holds a few thousand records and every writer has
    # appended at least once (not after a fixed time, which a slow machine would spend
    # starting the writers; and not on the count alone, which the three batching writers
    # can reach before the slower single writer's first commit).
    while time.monotonic() < deadline:
        with Session(engine) as session:
            count = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
            writers = session.scalar(select(func.count(distinct(AuditEvent.actor)))) or 0
        if count >= 3000 and writers == len(modes):
            break
        time.sleep(0.2)
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    acknowledged: list[str] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=30)
        acknowledged.extend(out.split())
    assert len(acknowledged) > 1000, "the writers acknowledged too little to prove anything"
    assert any(a.startswith("w3-") for a in acknowledged), "the single writer appended nothing"
    with Session(engine) as session:
        targets = list(session.scalars(select(AuditEvent.target)))
        batches = session.scalar(select(func.count(distinct(AuditEvent.at))))
        result = check_log(session, load_or_create_key(tmp_path).public_key())
    engine.dispose()
    present = set(targets)
    assert len(targets) == len(present)  # nothing recorded twice
    assert set(acknowledged) <= present  # every acknowledged record survived
    assert result.records == len(present)  # one chain, no gap, and it verifies
    assert batches is not None and batches < len(present)  # some commits held several records


def test_auditor_exports_through_the_api_and_it_verifies(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from appliance.admin.app import create_app
    from appliance.admin.services.accounts import create_user
    from appliance.admin.settings import AdminSettings
    from appliance.db.models import Role

    url = new_log(tmp_path)
    with Session(make_engine(url)) as session:
        create_user(session, "audrey", Role.auditor, password="a-long-test-password", actor="test")
        session.commit()
    settings = AdminSettings(profile="test", db_url=url, data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.app.state.audit_watch.status.ok is True  # checked at start
        login = client.post(
            "/api/v1/auth/login", json={"username": "audrey", "password": "a-long-test-password"}
        )
        csrf = login.json()["csrf_token"]
        browse = client.get("/api/v1/audit/records", params={"action": "auth"})
        assert browse.status_code == 200
        assert {r["action"] for r in browse.json()} == {"auth.login"}
        response = client.post(
            "/api/v1/audit/exports",
            headers={"X-CSRF-Token": csrf},
            json={
                "since": "2000-01-01T00:00:00Z",
                "until": "2100-01-01T00:00:00Z",
                "format": "csv",
            },
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-tar"
    archive = tmp_path / "from-api.tar"
    archive.write_bytes(response.content)
    summary = verify_export(archive)
    assert summary.records >= 12  # ten, the user, the login, the read
    with Session(make_engine(url)) as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))
    assert "audit.read" in actions and actions[-1] == "audit.export"


def test_the_service_says_loudly_when_the_log_was_altered(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from appliance.admin.app import create_app
    from appliance.admin.settings import AdminSettings

    url = new_log(tmp_path)
    with make_engine(url).begin() as connection:
        connection.execute(text("UPDATE audit_events SET actor = 'eve' WHERE seq = 2"))
    settings = AdminSettings(profile="test", db_url=url, data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        status = client.app.state.audit_watch.status
        assert status.ok is False
        assert "record 2 (identity.create by eve) was altered" in status.message


@pytest.mark.parametrize(
    ("member", "change", "message"),
    [
        ("records.jsonl", lambda d: d.replace(b'"actor"', b'"actr"', 1), "is malformed"),
        ("checkpoint.json", lambda d: b'{"tree_size": 1}', "is malformed"),
        ("proofs.json", lambda d: b"not json", "proofs.json is not valid JSON"),
    ],
    ids=["record field removed", "checkpoint fields removed", "proofs not json"],
)
def test_malformed_exports_are_a_clear_error(
    log: tuple[Path, str, Path], member: str, change: object, message: str
) -> None:
    _, _, archive = log
    rewrite(archive, member, change)
    with pytest.raises(AuditIntegrityError, match=message):
        verify_export(archive)
    result = audit_cli("verify", str(archive))
    assert result.returncode == 1 and "Traceback" not in result.stderr
