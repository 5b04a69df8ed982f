"""Issue 14, item 4: the audit page's integrity line says when the log was checked, what
that covered and how much is newer, with correct plurals; a person can ask for a check now
(a button and POST /api/v1/audit/check), and the request is in the log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.audit_watch import AuditStatus
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, Role
from tests.unit.admin_login import PASSWORD, log_in

NOW = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)
AT = datetime(2026, 11, 28, 15, 32, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "records_now", "line"),
    [
        (
            AuditStatus(True, "", AT, 1, 0),
            3,
            "checked 15:32 UTC: 1 record, 0 checkpoints; 2 newer records not yet checked",
        ),
        (
            AuditStatus(True, "", AT, 2, 1),
            3,
            "checked 15:32 UTC: 2 records, 1 checkpoint; 1 newer record not yet checked",
        ),
        (
            AuditStatus(True, "", AT, 3, 2),
            3,
            "checked 15:32 UTC: 3 records, 2 checkpoints; nothing newer",
        ),
        (
            AuditStatus(True, "", AT - timedelta(days=1), 3, 2),
            3,
            "checked 2026-11-27 15:32 UTC: 3 records, 2 checkpoints; nothing newer",
        ),
        (AuditStatus(), 1, "not checked yet; the log holds 1 record"),
        (
            AuditStatus(False, "record 2 (auth.login by eve) was altered", AT),
            5,
            "checked 15:32 UTC: record 2 (auth.login by eve) was altered",
        ),
    ],
    ids=["one record", "one checkpoint", "up to date", "yesterday", "never", "failed"],
)
def test_integrity_line_says_when_and_what_it_covered(
    status: AuditStatus, records_now: int, line: str
) -> None:
    assert status.summary(records_now, NOW) == line


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        create_user(session, "admin1", Role.admin, password=PASSWORD, actor="test")
        create_user(session, "auditor1", Role.auditor, password=PASSWORD, actor="test")
        session.commit()
    settings = AdminSettings(profile="test", db_url=url, data_dir=tmp_path)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def integrity(page: str) -> str:
    found = re.search(r'<p id="integrity">(.*?)</p>', page, re.S)
    assert found is not None
    return re.sub(r"<[^>]+>", "", found.group(1))


def test_integrity_line_is_not_stale_and_a_check_can_be_asked_for(client: TestClient) -> None:
    csrf = log_in(client, "auditor1")
    line = integrity(client.get("/audit").text)
    # Checked at start over the two account records; the login and this read are newer.
    assert re.fullmatch(
        r"Integrity: verified — checked \d\d:\d\d UTC: 2 records, 0 checkpoints; "
        r"2 newer records not yet checked",
        line,
    ), line
    checked = client.post("/audit/check", data={"csrf_token": csrf}, follow_redirects=False)
    assert (checked.status_code, checked.headers["location"]) == (303, "/audit")
    line = integrity(client.get("/audit").text)
    # The check covered records 1..4 (the accounts, the login, the first read); the
    # check's own record and the second read came after it.
    assert re.search(
        r"checked \d\d:\d\d UTC: 4 records, 0 checkpoints; 2 newer records not yet", line
    ), line
    with Session(make_engine(str(client.app.state.settings.database_url))) as session:  # type: ignore[attr-defined]
        asked = session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.check")).all()
    assert [(r.actor, r.outcome, r.details) for r in asked] == [
        ("auditor1", "ok", {"records": 4, "checkpoints": 0})
    ]


def test_check_now_through_the_api(client: TestClient) -> None:
    login = client.post("/api/v1/auth/login", json={"username": "admin1", "password": PASSWORD})
    headers = {"X-CSRF-Token": login.json()["csrf_token"]}
    answer = client.post("/api/v1/audit/check", headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["ok"], body["records"], body["checkpoints"]) == (True, 3, 0)
    assert (body["log_records"], body["unchecked"]) == (4, 1)  # the check's own record
    assert body["summary"].endswith("3 records, 0 checkpoints; 1 newer record not yet checked")
    status = client.get("/api/v1/audit/status").json()
    assert status["checked_at"] == body["checked_at"] and status["records"] == 3


def test_check_now_names_an_altered_record(client: TestClient) -> None:
    url = str(client.app.state.settings.database_url)  # type: ignore[attr-defined]
    with make_engine(url).begin() as connection:
        connection.execute(text("UPDATE audit_events SET actor = 'eve' WHERE seq = 1"))
    csrf = log_in(client, "auditor1")
    client.post("/audit/check", data={"csrf_token": csrf})
    line = integrity(client.get("/audit").text)
    assert line.startswith("Integrity: FAILED — checked ")
    assert "record 1 (user.create by eve) was altered" in line
    with Session(make_engine(url)) as session:
        asked = session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.check")).one()
    assert asked.outcome == "failed" and "was altered" in asked.details["message"]
