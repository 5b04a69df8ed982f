"""The admin service's accounts against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from appliance.admin.api.auth import UserOut
from appliance.admin.app import create_app
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.admin.web import pages
from appliance.db.engine import make_engine
from appliance.db.migrate import head_revision
from appliance.db.models import AuditEvent, Role, User
from tests.integration.support import free_port, wait_http

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-test-password"


@pytest.fixture
def client(migrated: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = AdminSettings(
        profile="test",
        db_url=migrated,
        data_dir=tmp_path,
        lockout_threshold=3,
        throttle_per_client=50,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def login(client: TestClient, user: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/auth/login", json={"username": user, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


def events(url: str, action: str) -> list[AuditEvent]:
    with Session(make_engine(url)) as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )


def test_login_sets_a_strict_http_only_cookie(client: TestClient, migrated: str) -> None:
    response = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert "appliance_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # no TLS in this test: Secure comes with a certificate
    assert response.json()["user"] == {
        "username": "alice",
        "role": "admin",
        "totp_enabled": False,
        "must_change_password": False,
    }
    me = client.get("/api/v1/auth/me")
    assert me.json()["user"]["username"] == "alice"
    assert events(migrated, "auth.login")[-1].actor == "alice"


def test_wrong_password_is_a_json_401_and_audited(client: TestClient, migrated: str) -> None:
    response = client.post("/api/v1/auth/login", json={"username": "bob", "password": "nope"})
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "AuthFailedError",
            "message": "wrong user name, password or one-time code",
        }
    }
    assert events(migrated, "auth.login")[-1].outcome == "denied"


def test_no_session_is_401_and_auditor_cannot_change(client: TestClient) -> None:
    assert client.get("/api/v1/users").status_code == 401
    csrf = login(client, "audrey")
    assert client.get("/api/v1/users").status_code == 200
    response = client.post(
        "/api/v1/users",
        json={"username": "mallory", "role": "admin"},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 403
    assert "only admins may change things" in response.json()["error"]["message"]


def test_csrf_token_is_required_for_changes(client: TestClient) -> None:
    csrf = login(client, "alice")
    without = client.post("/api/v1/users", json={"username": "carol", "role": "auditor"})
    assert without.status_code == 403
    assert without.json()["error"]["message"] == "missing or wrong CSRF token for this session"
    made = client.post(
        "/api/v1/users",
        json={"username": "carol", "role": "auditor"},
        headers={"X-CSRF-Token": csrf},
    )
    assert made.status_code == 201
    assert len(made.json()["one_time_password"]) == 20
    again = client.post(
        "/api/v1/users",
        json={"username": "carol", "role": "auditor"},
        headers={"X-CSRF-Token": csrf},
    )
    assert again.status_code == 409


def test_lock_out_after_repeated_failures(client: TestClient, migrated: str) -> None:
    with Session(make_engine(migrated)) as session:
        create_user(session, "dave", Role.admin, password=PASSWORD, actor="test")
        session.commit()
    for _ in range(3):
        client.post("/api/v1/auth/login", json={"username": "dave", "password": "wrong"})
    locked = client.post("/api/v1/auth/login", json={"username": "dave", "password": PASSWORD})
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert "locked" in locked.json()["error"]["message"]


def test_throttle_per_client(migrated: str, tmp_path: Path) -> None:
    settings = AdminSettings(
        profile="test",
        db_url=migrated,
        data_dir=tmp_path,
        throttle_per_client=2,
        lockout_threshold=100,
    )
    with TestClient(create_app(settings), client=("203.0.113.9", 5000)) as client:
        for _ in range(2):
            client.post("/api/v1/auth/login", json={"username": "x", "password": "y"})
        response = client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        assert response.status_code == 429
        assert events(migrated, "auth.login")[-1].outcome == "throttled"


def test_totp_second_factor(client: TestClient, migrated: str) -> None:
    secret = pyotp.random_base32()
    with Session(make_engine(migrated)) as session:
        create_user(session, "erin", Role.admin, password=PASSWORD, actor="test")
        user = session.scalar(select(User).where(User.username == "erin"))
        assert user is not None
        user.totp_secret = secret
        session.commit()
    no_code = client.post("/api/v1/auth/login", json={"username": "erin", "password": PASSWORD})
    assert no_code.status_code == 401
    ok = client.post(
        "/api/v1/auth/login",
        json={"username": "erin", "password": PASSWORD, "totp": pyotp.TOTP(secret).now()},
    )
    assert ok.status_code == 200
    assert ok.json()["user"]["totp_enabled"] is True


def test_logout_and_password_change_end_sessions(client: TestClient, migrated: str) -> None:
    with Session(make_engine(migrated)) as session:
        create_user(session, "frank", Role.admin, password=PASSWORD, actor="test")
        session.commit()
    csrf = login(client, "frank")
    changed = client.post(
        "/api/v1/auth/password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": PASSWORD, "new_password": "another-long-one"},
    )
    assert changed.status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401  # every session ended
    csrf = login(client, "frank", "another-long-one")
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401


def test_reads_come_from_a_read_only_engine_that_refuses_writes(
    client: TestClient, migrated: str
) -> None:
    login = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200
    assert client.get("/api/v1/auth/me").json()["user"]["username"] == "alice"
    assert "alice" in {u["username"] for u in client.get("/api/v1/users").json()}
    # The engine those routes use: a write through it is refused by the database itself.
    with Session(make_engine(migrated, read_only=True)) as session:
        session.scalars(select(User).where(User.username == "bob")).one().failed_logins = 99
        with pytest.raises(DBAPIError, match="read.?only"):
            session.commit()
    with Session(make_engine(migrated)) as session:
        assert session.scalars(select(User).where(User.username == "bob")).one().failed_logins != 99


def test_malformed_request_is_a_json_422(client: TestClient) -> None:
    response = client.post("/api/v1/auth/login", json={"username": "alice"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "ValidationError"
    assert "password" in response.json()["error"]["message"]


def test_cli_migrate_create_user_and_serve(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    env = {
        **os.environ,
        "APPLIANCE_ADMIN_PROFILE": "lab",
        "APPLIANCE_ADMIN_DATA_DIR": str(tmp_path),
    }

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "appliance", "admin", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            check=False,
            timeout=120,
        )

    migrated = cli("migrate", "--db", url)
    assert migrated.returncode == 0, migrated.stderr
    assert f"upgraded from empty to revision {head_revision()}" in migrated.stdout
    again = cli("migrate", "--db", url)
    assert again.returncode == 0, again.stderr
    assert f"already at revision {head_revision()}" in again.stdout
    made = cli("create-user", "ops", "--role", "admin", "--db", url)
    assert made.returncode == 0, made.stderr
    otp = made.stdout.split("one-time password (change it at first login): ")[1].strip()
    typed = cli(
        "create-user",
        "auditor1",
        "--role",
        "auditor",
        "--db",
        url,
        "--password-stdin",
        stdin="typed-password-123\n",
    )
    assert typed.returncode == 0 and "one-time password" not in typed.stdout
    handed = cli(  # the installer's way: its own generated password, marked one-time
        "create-user",
        "installer-admin",
        "--role",
        "admin",
        "--db",
        url,
        "--password-stdin",
        "--one-time",
        stdin="handed-over-password-1\n",
    )
    assert handed.returncode == 0, handed.stderr
    assert "(the password must be changed at first login)" in handed.stdout
    short = cli(
        "create-user", "x2", "--role", "auditor", "--db", url, "--password-stdin", stdin="short\n"
    )
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    assert "Traceback" not in short.stderr

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "appliance", "admin", "serve", "--db", url, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(
            f"http://127.0.0.1:{port}/api/v1/openapi.json",
            timeout=60,
            alive=lambda: server.poll() is None,
        )
        import httpx

        for user, password in (("ops", otp), ("installer-admin", "handed-over-password-1")):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
                response = http.post(
                    "/api/v1/auth/login", json={"username": user, "password": password}
                )
                assert response.status_code == 200
                assert response.json()["user"]["must_change_password"] is True
                # Issue 14, item 3: nothing but the password change until it is done.
                refused = http.get("/api/v1/users")
                assert refused.status_code == 403
                assert refused.json()["error"]["code"] == "PasswordChangeRequiredError"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_change_is_answered_only_once_committed(
    migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that fails (a full disk, say) must not follow a success the caller has
    already been sent: the answer waits for the commit and says it failed."""
    settings = AdminSettings(profile="test", db_url=migrated, data_dir=tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        login = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
        csrf = login.json()["csrf_token"]

        def full_disk(_session: Session) -> None:
            raise OperationalError("COMMIT", {}, Exception("database or disk is full"))

        monkeypatch.setattr(Session, "commit", full_disk)
        made = client.post(
            "/api/v1/users",
            headers={"X-CSRF-Token": csrf},
            json={"username": "never-stored", "role": "auditor"},
        )
        monkeypatch.undo()
        watch = client.app.state.audit_watch  # type: ignore[attr-defined]
        watch.refusals.record(watch.sessions)  # the watch's next pass, space back
    assert made.status_code == 507, made.text
    error = made.json()["error"]
    assert error["code"] == "CommitFailedError"
    assert "database or disk is full" in error["message"]
    assert "free space" in error["hint"] and "df -h" in error["hint"]
    with Session(make_engine(migrated)) as session:
        assert session.scalar(select(User).where(User.username == "never-stored")) is None
    # Not stored, but not unseen: the refusal is in the audit log once it can be.
    refused = _last_storage_refusal(migrated)
    assert refused["fault"] == "DiskFull" and refused["refused"] == 1


def _last_storage_refusal(url: str) -> dict[str, Any]:
    """The details of the newest `storage.refused` record in the database at ``url``."""
    with Session(make_engine(url)) as session:
        record = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "storage.refused")
            .order_by(AuditEvent.seq.desc())
        ).first()
    assert record is not None, "no storage.refused record"
    return dict(record.details)


@pytest.mark.parametrize(
    ("words", "status", "code", "hint"),
    [
        ("database or disk is full", 507, "DiskFull", "free space"),
        ("database is locked", 503, "DatabaseBusy", "try again in a few seconds"),
    ],
)
def test_a_storage_fault_outside_a_commit_is_named_with_what_to_do(
    migrated: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    words: str,
    status: int,
    code: str,
    hint: str,
) -> None:
    """The disk filled (or the write lock stayed held) while a request was under way, not
    at its commit: the answer names the fault, not an anonymous internal error."""
    settings = AdminSettings(profile="test", db_url=migrated, data_dir=tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})

        def refused(*_: object, **__: object) -> None:
            raise OperationalError("INSERT", {}, Exception(words))

        monkeypatch.setattr(UserOut, "of", refused)
        answer = client.get("/api/v1/users")
        monkeypatch.setattr(pages, "_dashboard", refused)
        page = client.get("/")
        monkeypatch.undo()
        watch = client.app.state.audit_watch  # type: ignore[attr-defined]
        watch.refusals.record(watch.sessions)
    refused_record = _last_storage_refusal(migrated)
    assert refused_record["fault"] == code and refused_record["refused"] == 2
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and hint in error["hint"]
    assert "reference" not in error["message"]
    assert page.status_code == status and hint in page.text


def test_an_unexpected_error_is_answered_clearly_with_a_reference_the_journal_has(
    migrated: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A defect nobody mapped to an error still gets an answer in the API's error shape
    (or the error page), not a bare 'Internal Server Error', and its traceback is logged
    under the reference the answer gives."""
    settings = AdminSettings(profile="test", db_url=migrated, data_dir=tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})

        def broken(*_: object, **__: object) -> None:
            raise RuntimeError("a defect")

        monkeypatch.setattr(UserOut, "of", broken)
        answer = client.get("/api/v1/users")
        monkeypatch.setattr(pages, "_dashboard", broken)
        page = client.get("/")
        monkeypatch.undo()
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["code"] == "InternalError" and "RuntimeError" in error["message"]
    reference = error["message"].split("reference ")[1].split(")")[0]
    assert f"journalctl -u appliance-admin -g {reference}" in error["hint"]
    assert any(reference in r.getMessage() and r.exc_info for r in caplog.records)
    assert page.status_code == 500 and "RuntimeError" in page.text
    assert page.headers["content-type"].startswith("text/html")


def test_a_request_waiting_for_the_write_lock_does_not_stall_the_others(
    migrated: str, tmp_path: Path
) -> None:
    """On SQLite a write request's first statement waits for the one write lock. It waits
    in a worker thread: the event loop goes on serving (in the lab it was waiting on the
    loop, so the request holding the lock could not commit until the 30 s timeout)."""
    if not migrated.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    settings = AdminSettings(profile="test", db_url=migrated, data_dir=tmp_path)
    database = migrated.removeprefix("sqlite:///")
    with TestClient(create_app(settings)) as client:
        login = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
        csrf = login.json()["csrf_token"]
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        waiting: list[int] = []
        writer = threading.Thread(
            target=lambda: waiting.append(
                client.post(
                    "/api/v1/users",
                    headers={"X-CSRF-Token": csrf},
                    json={"username": "queued-user", "role": "auditor"},
                ).status_code
            )
        )
        writer.start()
        try:
            # While the write waits, the service answers another request.
            assert client.get("/login").status_code == 200
            assert not waiting, "the write went through while the lock was held"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        writer.join(60)
    assert waiting == [201]
