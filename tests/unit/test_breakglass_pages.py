"""The break-glass page: request, the requester sees no approve button and is refused if
they try, a second admin approves and sees the tokens once, seal (fake controller)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.breakglass.clock import BootClock
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Role
from tests.unit.fake_controller import FakeController
from tests.unit.test_admin_pages import PASSWORD, log_in


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[TestClient, FakeController]]:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        for name, role in (("alice", Role.admin), ("bob", Role.admin), ("audrey", Role.auditor)):
            create_user(session, name, role, password=PASSWORD, actor="test")
        session.commit()
    app = create_app(
        AdminSettings(profile="test", db_url=url, data_dir=tmp_path),
        boot_clock=lambda: BootClock("boot-a", 50.0),
    )
    fake = FakeController()
    fake.services = ["ssh-gw1"]
    app.state.controller = fake
    with TestClient(app) as client:
        yield client, fake


def test_two_admins_open_and_seal_a_window(site: tuple[TestClient, FakeController]) -> None:
    client, fake = site
    csrf = log_in(client, "alice")
    made = client.post(
        "/breakglass/windows",
        data={
            "csrf_token": csrf,
            "reason": "disk full on gw1",
            "ticket": "CASE-9",
            "scope": "ssh-gw1",
            "engineers": "eve, mallory",
            "duration_minutes": "30",
        },
    )
    assert made.status_code == 200 and 'id="window-1"' in made.text
    assert "/breakglass/windows/1/approve" not in made.text  # not for the requester
    refused = client.post("/breakglass/windows/1/approve", data={"csrf_token": csrf})
    assert refused.status_code == 403 and "a second admin must decide" in refused.text

    client.cookies.clear()
    csrf = log_in(client, "audrey")
    page = client.get("/breakglass")
    assert "disk full on gw1" in page.text and '<form method="post" action="/breakglass' not in (
        page.text
    )

    client.cookies.clear()
    csrf = log_in(client, "bob")
    tokens = client.post("/breakglass/windows/1/approve", data={"csrf_token": csrf})
    assert tokens.status_code == 201
    assert "jwt-for-vendor-w1-eve" in tokens.text and "jwt-for-vendor-w1-mallory" in tokens.text
    page = client.get("/breakglass")
    assert "jwt-for" not in page.text  # shown once
    assert re.search(r'class="state">active', page.text)
    sealed = client.post("/breakglass/seal", data={"csrf_token": csrf})
    assert re.search(r'class="state">revoked — site sealed', sealed.text)
    assert fake.identities == {}


def test_bad_start_is_explained(site: tuple[TestClient, FakeController]) -> None:
    client, _ = site
    csrf = log_in(client, "alice")
    page = client.post(
        "/breakglass/windows",
        data={
            "csrf_token": csrf,
            "reason": "r",
            "ticket": "t",
            "scope": "ssh-gw1",
            "engineers": "eve",
            "duration_minutes": "30",
            "starts_at": "tomorrow",
        },
    )
    assert page.status_code == 422 and "expected a date and time" in page.text
