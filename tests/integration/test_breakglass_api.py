"""Break-glass over HTTP against real databases (SQLite and PostgreSQL), with the
controller really unreachable, which is all this machine can offer (OpenZiti cannot be
built here): the two-person rule, roles, an approval that grants nothing while the
controller is down, a revoke and a seal that stand anyway, and evidence that verifies with
the real `appliance audit verify`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.settings import AdminSettings
from appliance.db.engine import make_engine
from appliance.db.models import AuditEvent, BreakglassWindow, WindowState
from appliance.lab.windows import add_active_window
from tests.integration.conftest import PASSWORD
from tests.integration.support import free_port

pytestmark = pytest.mark.integration
API = "/api/v1/breakglass"
REQUEST = {
    "reason": "gateway crash",
    "ticket": "CASE-5",
    "scope": ["ssh-gw1"],
    "engineers": ["eve"],
    "duration_minutes": 30,
}


@pytest.fixture
def client(migrated: str, tmp_path: Path) -> Iterator[TestClient]:
    secret = tmp_path / "controller.password"
    secret.write_text("unused")
    settings = AdminSettings(
        profile="test",
        db_url=migrated,
        data_dir=tmp_path,
        controller_url=f"https://127.0.0.1:{free_port()}",  # nothing listens: unreachable
        controller_password_file=secret,
        controller_timeout=2,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def login(client: TestClient, user: str) -> dict[str, str]:
    client.cookies.clear()
    answer = client.post("/api/v1/auth/login", json={"username": user, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"X-CSRF-Token": answer.json()["csrf_token"]}


def window_row(url: str, wid: int) -> BreakglassWindow:
    with Session(make_engine(url)) as db:
        found = db.get(BreakglassWindow, wid)
        assert found is not None
        return found


def test_two_person_rule_and_controller_down(client: TestClient, migrated: str) -> None:
    alice = login(client, "alice")
    wid = client.post(f"{API}/windows", json=REQUEST, headers=alice).json()["id"]
    assert client.post(f"{API}/windows/{wid}/approve", json={}, headers=alice).status_code == 403
    audrey = login(client, "audrey")
    assert client.post(f"{API}/windows/{wid}/deny", json={}, headers=audrey).status_code == 403

    bob = login(client, "bob")
    down = client.post(f"{API}/windows/{wid}/approve", json={}, headers=bob)
    assert down.status_code == 503
    assert (
        "cannot reach" in down.json()["error"]["message"]
        or "127.0.0.1" in (down.json()["error"]["message"])
    )
    row = window_row(migrated, wid)
    assert (row.state, row.ziti_objects) == (WindowState.requested, {})  # nothing granted
    denied = client.post(f"{API}/windows/{wid}/deny", json={"note": "later"}, headers=bob)
    assert denied.json()["state"] == "denied"


def test_revoke_and_seal_stand_with_the_controller_down_and_evidence_verifies(
    client: TestClient, migrated: str, tmp_path: Path
) -> None:
    wid = add_active_window(migrated, 1800, ziti_objects={"identities": {"eve": "z-eve"}})
    alice = login(client, "alice")
    pending = client.post(f"{API}/windows", json=REQUEST, headers=alice).json()["id"]
    revoked = client.post(f"{API}/windows/{wid}/revoke", json={"reason": "done"}, headers=alice)
    assert revoked.status_code == 200, revoked.text
    body = revoked.json()
    assert body["state"] == "revoked" and body["cleanup_confirmed_at"] is None
    assert body["cleanup_error"]  # says why the controller did not confirm
    sealed = client.post(f"{API}/seal", headers=alice).json()
    assert sealed == {"ended": [pending], "unconfirmed": []}
    assert window_row(migrated, pending).state == WindowState.denied

    login(client, "audrey")
    evidence = client.get(f"{API}/windows/{wid}/evidence")
    assert evidence.status_code == 200
    archive = tmp_path / "evidence.tar"
    archive.write_bytes(evidence.content)
    verified = subprocess.run(
        [sys.executable, "-m", "appliance", "audit", "verify", str(archive)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr
    with Session(make_engine(migrated)) as db:
        actions = [
            e.action
            for e in db.scalars(
                select(AuditEvent)
                .where(AuditEvent.target == f"window:{wid}")
                .order_by(AuditEvent.seq)
            )
        ]
    assert actions == ["breakglass.revoke", "breakglass.end-confirmed"]
