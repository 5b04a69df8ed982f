"""/api/v1/breakglass over HTTP: roles, the two-person rule, sealing, and the evidence export
(in-process app, real SQLite, a fake controller: the real one cannot be built here)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.audit.verify import verify_export
from appliance.breakglass.clock import BootClock
from appliance.breakglass.shell.logins import hash_secret
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Role
from tests.unit.fake_controller import FakeController

PASSWORD = "a-long-test-password"
API = "/api/v1/breakglass"
REQUEST = {
    "reason": "vLLM on gpu1 does not start",
    "ticket": "CASE-77",
    "scope": ["ssh-gpu1"],
    "engineers": ["eve"],
    "duration_minutes": 20,
}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[TestClient, FakeController]]:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        for name, role in (("alice", Role.admin), ("bob", Role.admin), ("audrey", Role.auditor)):
            create_user(session, name, role, password=PASSWORD, actor="test")
        session.commit()
    app = create_app(
        AdminSettings(profile="test", db_url=url, data_dir=tmp_path, breakglass_max_minutes=60),
        boot_clock=lambda: BootClock("boot-a", 100.0),
    )
    fake = FakeController()
    fake.services = ["ssh-gpu1", "ssh-gw1"]
    app.state.controller = fake
    with TestClient(app) as client:
        yield client, fake


def login(client: TestClient, name: str) -> dict[str, str]:
    client.cookies.clear()
    answer = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"X-CSRF-Token": answer.json()["csrf_token"]}


def test_request_approve_seal_and_evidence(
    site: tuple[TestClient, FakeController], tmp_path: Path
) -> None:
    client, fake = site
    alice = login(client, "alice")
    made = client.post(f"{API}/windows", json=REQUEST, headers=alice)
    assert made.status_code == 201, made.text
    wid = made.json()["id"]
    assert made.json()["state"] == "requested"

    own = client.post(f"{API}/windows/{wid}/approve", json={}, headers=alice)
    assert own.status_code == 403
    assert "a second admin must decide" in own.json()["error"]["message"]

    audrey = login(client, "audrey")
    assert client.post(f"{API}/windows/{wid}/approve", json={}, headers=audrey).status_code == 403
    assert client.post(f"{API}/seal", headers=audrey).status_code == 403
    assert client.get(f"{API}/windows/{wid}").json()["state"] == "requested"  # auditors read

    bob = login(client, "bob")
    approved = client.post(f"{API}/windows/{wid}/approve", json={"note": "go"}, headers=bob)
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["window"]["state"] == "active"
    (handover,) = body["handovers"]
    assert handover["engineer"] == "eve" and handover["jwt"].startswith("jwt-for-vendor-w")
    assert handover["qr_svg"].startswith("<?xml")
    # The token is shown once: reading the window again never includes it.
    assert "jwt" not in json.dumps(client.get(f"{API}/windows/{wid}").json())

    fake.circuits["c1"] = (next(iter(fake.identities)), "ssh-gpu1")
    (conn,) = client.get(f"{API}/windows/{wid}/connections").json()
    assert (conn["engineer"], conn["service"]) == ("eve", "ssh-gpu1")

    sealed = client.post(f"{API}/seal", headers=bob)
    assert sealed.json() == {"ended": [wid], "unconfirmed": []}
    window = client.get(f"{API}/windows/{wid}").json()
    assert (window["state"], window["end_reason"]) == ("revoked", "site sealed")
    assert window["cleanup_confirmed_at"] is not None
    assert fake.identities == {} and fake.circuits == {}

    assert client.get(f"{API}/windows/{wid}/evidence").status_code == 403  # admins: no
    login(client, "audrey")
    evidence = client.get(f"{API}/windows/{wid}/evidence")
    assert evidence.status_code == 200
    path = tmp_path / "evidence.tar"
    path.write_bytes(evidence.content)
    summary = verify_export(path)
    with tarfile.open(fileobj=io.BytesIO(evidence.content)) as tar:
        member = tar.extractfile("records.jsonl")
        assert member is not None
        rows = [json.loads(line) for line in member.read().splitlines()]
    kept = [r["action"] for r in rows if not r.get("omitted")]
    assert kept == [
        "breakglass.request",
        "breakglass.approve",
        "breakglass.activate",
        "breakglass.revoke",
        "breakglass.end-confirmed",
    ]
    assert summary.records == len(rows) and summary.omitted == len(rows) - len(kept)


def test_extend_withdraw_deny_and_errors(site: tuple[TestClient, FakeController]) -> None:
    client, _ = site
    alice = login(client, "alice")
    too_long = client.post(
        f"{API}/windows", json={**REQUEST, "duration_minutes": 61}, headers=alice
    )
    assert too_long.status_code == 422
    assert "expected 1 to 60 min" in too_long.json()["error"]["message"]
    assert client.get(f"{API}/windows/999").status_code == 404
    assert client.post(f"{API}/windows", json=REQUEST).status_code == 403  # no CSRF token

    first = client.post(f"{API}/windows", json=REQUEST, headers=alice).json()["id"]
    second = client.post(f"{API}/windows", json=REQUEST, headers=alice).json()["id"]
    assert client.post(f"{API}/windows/{second}/withdraw", headers=alice).json()["state"] == (
        "withdrawn"
    )
    bob = login(client, "bob")
    assert (
        client.post(
            f"{API}/windows/{first}/extend",
            json={"minutes": 5, "reason": "r", "ticket": "t"},
            headers=bob,
        ).status_code
        == 409
    )  # not active yet
    client.post(f"{API}/windows/{first}/approve", json={}, headers=bob)
    ext = client.post(
        f"{API}/windows/{first}/extend",
        json={"minutes": 10, "reason": "more", "ticket": "t"},
        headers=bob,
    )
    assert ext.status_code == 201 and ext.json()["extends_id"] == first
    assert (
        client.post(f"{API}/windows/{ext.json()['id']}/approve", json={}, headers=bob).status_code
        == 403
    )
    alice = login(client, "alice")
    assert (
        client.post(
            f"{API}/windows/{ext.json()['id']}/deny", json={"note": "no"}, headers=alice
        ).json()["state"]
        == "denied"
    )
    revoked = client.post(f"{API}/windows/{first}/revoke", json={"reason": "fixed"}, headers=alice)
    assert revoked.json()["state"] == "revoked"
    assert client.post(f"{API}/windows/{first}/revoke", json={}, headers=alice).status_code == 409


def test_a_vendor_shell_scope_hands_each_engineer_a_shell_secret_once(
    site: tuple[TestClient, FakeController],
) -> None:
    client, fake = site
    fake.services.append("vendor-shell-gpu1")
    alice = login(client, "alice")
    made = client.post(
        f"{API}/windows", json={**REQUEST, "scope": ["vendor-shell-gpu1"]}, headers=alice
    )
    wid = made.json()["id"]
    bob = login(client, "bob")
    approved = client.post(f"{API}/windows/{wid}/approve", json={}, headers=bob).json()
    (handover,) = approved["handovers"]
    secret = handover["shell_secret"]
    assert len(secret) >= 32
    # Shown in that answer only: the window, its list and its evidence never carry it.
    assert secret not in json.dumps(client.get(f"{API}/windows/{wid}").json())
    assert secret not in json.dumps(client.get(f"{API}/windows").json())
    assert hash_secret(secret) not in json.dumps(client.get(f"{API}/windows/{wid}").json())


def test_a_scope_without_a_vendor_shell_hands_over_no_shell_secret(
    site: tuple[TestClient, FakeController],
) -> None:
    client, _ = site
    alice = login(client, "alice")
    wid = client.post(f"{API}/windows", json=REQUEST, headers=alice).json()["id"]
    bob = login(client, "bob")
    (handover,) = client.post(f"{API}/windows/{wid}/approve", json={}, headers=bob).json()[
        "handovers"
    ]
    assert handover["shell_secret"] == ""
