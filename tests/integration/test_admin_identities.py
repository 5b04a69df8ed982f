"""Identity routes with the controller down: a clear 503, nothing changed, the attempt audited.

The service must start and answer while the controller is unreachable. Here nothing
listens on the controller's port, for real. (Tests against a running controller need the
OpenZiti build, which this machine's Go proxy refuses.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, Identity, Role
from tests.integration.support import free_port

PASSWORD = "a-long-test-password"


@pytest.fixture
def down(tmp_path: Path) -> Iterator[tuple[TestClient, str, str]]:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        create_user(session, "admin1", Role.admin, password=PASSWORD, actor="test")
        session.commit()
    secret = tmp_path / "controller.password"
    secret.write_text("not-used")
    controller = f"https://127.0.0.1:{free_port()}"  # nothing listens here
    settings = AdminSettings(
        profile="test",
        db_url=url,
        data_dir=tmp_path,
        controller_url=controller,
        controller_password_file=secret,
        controller_timeout=2.0,
    )
    with TestClient(create_app(settings)) as client:
        login = client.post("/api/v1/auth/login", json={"username": "admin1", "password": PASSWORD})
        yield client, login.json()["csrf_token"], url


def test_create_while_the_controller_is_down(down: tuple[TestClient, str, str]) -> None:
    client, csrf, url = down
    response = client.post(
        "/api/v1/identities",
        headers={"X-CSRF-Token": csrf},
        json={"name": "alice-laptop", "kind": "device", "role_attributes": ["engineering"]},
    )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "ControllerUnreachableError"
    assert "https://127.0.0.1:" in error["message"]
    assert error["hint"]
    with Session(make_engine(url)) as session:
        assert session.scalars(select(Identity)).all() == []
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert last is not None
        assert (last.action, last.target, last.outcome) == (
            "identity.create",
            "alice-laptop",
            "error",
        )


def test_the_service_still_answers_reads(down: tuple[TestClient, str, str]) -> None:
    client, csrf, _ = down
    assert client.get("/api/v1/identities").json() == []
    assert client.get("/api/v1/grants").json() == []
    sync = client.post("/api/v1/identities/sync", headers={"X-CSRF-Token": csrf})
    assert sync.status_code == 503


def test_unknown_identity_is_404(down: tuple[TestClient, str, str]) -> None:
    client, csrf, _ = down
    assert client.get("/api/v1/identities/42").status_code == 404
    missing = client.delete("/api/v1/identities/42", headers={"X-CSRF-Token": csrf})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no identity with id 42"


def test_reads_answer_while_a_writer_holds_the_write_lock(
    down: tuple[TestClient, str, str],
) -> None:
    """A busy audit writer holds SQLite's write lock for each batch: reads do not queue."""
    client, _, url = down
    writer = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # held until the end of this test
        assert client.get("/api/v1/identities").status_code == 200
        assert client.get("/api/v1/auth/me").json()["user"]["username"] == "admin1"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
