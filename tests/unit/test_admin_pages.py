"""The server-rendered pages: login, the dashboard, create with QR, grant, disable, errors.

A fake controller stands in for OpenZiti (unit tier); the database is a real SQLite file.
"""

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
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Role
from tests.unit.admin_login import PASSWORD, log_in
from tests.unit.fake_controller import FakeController


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[TestClient, FakeController]]:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        create_user(session, "admin1", Role.admin, password=PASSWORD, actor="test")
        create_user(session, "auditor1", Role.auditor, password=PASSWORD, actor="test")
        session.commit()
    app = create_app(AdminSettings(profile="test", db_url=url, data_dir=tmp_path))
    controller = FakeController()
    app.state.controller = controller
    with TestClient(app) as client:
        yield client, controller


def test_anonymous_is_sent_to_login(site: tuple[TestClient, FakeController]) -> None:
    client, _ = site
    response = client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_login_form_needs_its_csrf_token(site: tuple[TestClient, FakeController]) -> None:
    client, _ = site
    client.get("/login")
    response = client.post(
        "/login", data={"username": "admin1", "password": PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 403
    assert "The form expired" in response.text


def test_wrong_password_shows_the_reason(site: tuple[TestClient, FakeController]) -> None:
    client, _ = site
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    page = client.post(
        "/login", data={"username": "admin1", "password": "wrong", "csrf_token": token.group(1)}
    )
    assert page.status_code == 401
    assert "wrong user name, password or one-time code" in page.text


def test_create_identity_shows_token_qr_and_download(
    site: tuple[TestClient, FakeController],
) -> None:
    client, controller = site
    csrf = log_in(client, "admin1")
    page = client.post(
        "/identities",
        data={
            "csrf_token": csrf,
            "name": "alice-laptop",
            "kind": "device",
            "role_attributes": "eng, #gpu",
        },
    )
    assert page.status_code == 201
    assert "jwt-for-alice-laptop" in page.text
    assert "<svg" in page.text and 'download="alice-laptop.jwt"' in page.text
    assert controller.identities["z1"]["attrs"] == ["eng", "gpu", "kind-device"]
    listing = client.get("/")
    assert "alice-laptop" in listing.text and "pending" in listing.text
    assert "jwt-for-alice-laptop" not in listing.text  # shown once


def test_grant_disable_and_delete(site: tuple[TestClient, FakeController]) -> None:
    client, controller = site
    csrf = log_in(client, "admin1")
    client.post("/identities", data={"csrf_token": csrf, "name": "bob", "kind": "user"})
    granted = client.post(
        "/grants", data={"csrf_token": csrf, "subject": "@bob", "model_service": "tiny"}
    )
    assert granted.status_code == 200  # followed the redirect to the dashboard
    assert "sk-" not in granted.text  # a grant makes no key: keys are per identity
    assert controller.policies["p1"]["identity_roles"] == ["@z1"]
    disabled = client.post("/identities/1/disable", data={"csrf_token": csrf})
    assert disabled.status_code == 200  # followed the redirect to the dashboard
    assert controller.identities["z1"]["disabled"] is True
    assert "Enable" in disabled.text
    client.post("/identities/1/delete", data={"csrf_token": csrf})
    assert controller.identities == {}


def test_controller_down_is_a_banner_not_a_crash(
    site: tuple[TestClient, FakeController],
) -> None:
    client, controller = site
    controller.down = True
    csrf = log_in(client, "admin1")
    page = client.post("/identities", data={"csrf_token": csrf, "name": "carol", "kind": "user"})
    assert page.status_code == 503
    assert 'role="alert"' in page.text and "cannot reach https://ctrl.test:1280" in page.text


def test_auditor_sees_no_forms_and_cannot_post(site: tuple[TestClient, FakeController]) -> None:
    client, controller = site
    csrf = log_in(client, "auditor1")
    page = client.get("/")
    assert "New identity" not in page.text and "Grant a model" not in page.text
    refused = client.post("/identities", data={"csrf_token": csrf, "name": "eve", "kind": "user"})
    assert refused.status_code == 403
    assert controller.calls == []


def test_forged_csrf_on_a_form_is_refused(site: tuple[TestClient, FakeController]) -> None:
    client, controller = site
    log_in(client, "admin1")
    refused = client.post(
        "/identities", data={"csrf_token": "forged", "name": "eve", "kind": "user"}
    )
    assert refused.status_code == 403
    assert controller.calls == []


def test_assets_are_shipped_not_fetched(site: tuple[TestClient, FakeController]) -> None:
    client, _ = site
    assert client.get("/static/app.css").status_code == 200
    page = client.get("/login").text
    assert not re.search(r'(src|href)="https?://', page)
