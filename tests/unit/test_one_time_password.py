"""Issue 14, item 3: an account with a one-time password may only change it or log out,
through the API (403 PasswordChangeRequiredError naming the route) and the pages (the
change form). In-process app, real SQLite, a fake controller."""

from __future__ import annotations

import re
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
from appliance.db.models import AuditEvent, Role, User
from tests.unit.admin_login import api_log_in
from tests.unit.fake_controller import FakeController

NEW = "my-own-long-password"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[TestClient, FakeController, str]]:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        _, otp = create_user(session, "first", Role.admin, password=None, actor="cli")
        session.commit()
    assert otp is not None
    app = create_app(AdminSettings(profile="test", db_url=url, data_dir=tmp_path))
    fake = FakeController()
    app.state.controller = fake
    with TestClient(app) as client:
        yield client, fake, otp


def test_one_time_password_must_be_changed_before_anything_else(
    site: tuple[TestClient, FakeController, str],
) -> None:
    client, fake, otp = site
    headers = api_log_in(client, "first", otp)
    assert client.get("/api/v1/auth/me").json()["user"]["must_change_password"] is True
    for method, path, body in [
        ("POST", "/api/v1/identities", {"name": "laptop", "kind": "device"}),
        ("POST", "/api/v1/users", {"username": "mallory", "role": "admin"}),
        ("GET", "/api/v1/users", None),
        ("GET", "/api/v1/audit/records", None),
        ("POST", "/api/v1/breakglass/seal", None),
    ]:
        refused = client.request(method, path, json=body, headers=headers)
        assert refused.status_code == 403, (method, path, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "PasswordChangeRequiredError"
        assert "POST /api/v1/auth/password" in error["message"]
    assert fake.calls == []

    same = client.post(
        "/api/v1/auth/password",
        json={"current_password": otp, "new_password": otp},
        headers=headers,
    )
    assert same.status_code == 422 and "must differ" in same.json()["error"]["message"]
    changed = client.post(
        "/api/v1/auth/password",
        json={"current_password": otp, "new_password": NEW},
        headers=headers,
    )
    assert changed.status_code == 204
    headers = api_log_in(client, "first", NEW)
    made = client.post(
        "/api/v1/identities", json={"name": "laptop", "kind": "device"}, headers=headers
    )
    assert made.status_code == 201, made.text


def test_one_time_password_may_log_out(site: tuple[TestClient, FakeController, str]) -> None:
    client, _, otp = site
    headers = api_log_in(client, "first", otp)
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_one_time_password_pages_show_only_the_change_form(
    site: tuple[TestClient, FakeController, str],
) -> None:
    client, fake, otp = site
    form = client.get("/login")
    page = client.post(
        "/login", data={"username": "first", "password": otp, "csrf_token": csrf_of(form.text)}
    )
    assert page.url.path == "/password"
    assert 'id="must-change"' in page.text and 'action="/password"' in page.text
    assert 'href="/breakglass"' not in page.text  # no way anywhere else
    csrf = csrf_of(page.text)
    for path in ("/", "/breakglass", "/audit"):
        sent = client.get(path, follow_redirects=False)
        assert (sent.status_code, sent.headers["location"]) == (303, "/password"), path
    refused = client.post(
        "/identities",
        data={"csrf_token": csrf, "name": "laptop", "kind": "device"},
        follow_redirects=False,
    )
    assert (refused.status_code, refused.headers["location"]) == (303, "/password")
    assert fake.calls == []

    mismatch = client.post(
        "/password",
        data={
            "csrf_token": csrf,
            "current_password": otp,
            "new_password": NEW,
            "repeat_password": NEW + "x",
        },
    )
    assert mismatch.status_code == 422 and "repetition differ" in mismatch.text
    done = client.post(
        "/password",
        data={
            "csrf_token": csrf,
            "current_password": otp,
            "new_password": NEW,
            "repeat_password": NEW,
        },
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, "/login?changed=true")
    assert "Password changed" in client.get("/login?changed=true").text
    form = client.get("/login")
    page = client.post(
        "/login", data={"username": "first", "password": NEW, "csrf_token": csrf_of(form.text)}
    )
    assert page.url.path == "/" and "<h1>Identities</h1>" in page.text
    url = str(client.app.state.settings.database_url)  # type: ignore[attr-defined]
    with Session(make_engine(url)) as session:
        user = session.scalars(select(User).where(User.username == "first")).one()
        assert user.must_change_password is False
        changes = session.scalars(
            select(AuditEvent.outcome).where(AuditEvent.action == "user.password")
        ).all()
    assert changes == ["ok"]


def test_a_given_password_can_be_marked_one_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        own, _ = create_user(session, "own", Role.admin, password=NEW, actor="cli")
        handed, _ = create_user(
            session, "handed", Role.admin, password=NEW, actor="installer", one_time=True
        )
        assert (own.must_change_password, handed.must_change_password) == (False, True)
