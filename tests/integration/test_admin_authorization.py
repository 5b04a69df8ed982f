"""Every route against anonymous, auditor and admin callers, each with the expected status.

The routes come from the app's OpenAPI document, so a new route is covered the day it is added:
anonymous callers get 401 everywhere but login and the OpenAPI document; auditors read
(GET) and may ask for an integrity check, but every change is 403; admins pass
authorization (their status is then whatever the route does with an empty body, never 401
or 403), except the audit export, a break-glass window's evidence and its recordings, which
are the auditors' alone. An account that still has its one-time password gets 403
PasswordChangeRequiredError everywhere but changing the password, logging out and
reading its own session (issue 14, item 3). The gateway hosts' access routes take no
session at all, only the access token: every session, of any role, gets 401 there, and the
token gets through (issue 24).
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

PASSWORD = "a-long-test-password"
PUBLIC = {("POST", "/api/v1/auth/login")}
#: Routes any logged-in caller may use to manage their own session, whatever the role.
SELF_SERVICE = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/password")}
#: Routes any logged-in caller may use although they are not GETs: they change nothing but
#: the audit log, which records them.
READERS_ASK = {("POST", "/api/v1/audit/check")}
#: Routes an account with a one-time password may use besides SELF_SERVICE.
OWN_SESSION = {("GET", "/api/v1/auth/me")}
#: Routes only auditors may use: exporting the audit log, a break-glass window's evidence and
#: its recorded vendor sessions (issue 26: the admin who granted the window does not review it).
AUDITOR_ONLY = {
    ("POST", "/api/v1/audit/exports"),
    ("GET", "/api/v1/breakglass/windows/1/evidence"),
    ("GET", "/api/v1/breakglass/windows/1/recordings"),
    ("GET", "/api/v1/breakglass/windows/1/recordings/1/cast"),
}
#: Routes for the gateway hosts' access proxies: their bearer token, never a session.
ACCESS_TOKEN_ONLY = {("GET", "/api/v1/access/policy"), ("POST", "/api/v1/access/usage")}
ACCESS_TOKEN = "the-gateway-hosts-token"


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory: pytest.TempPathFactory) -> AdminSettings:
    root = tmp_path_factory.mktemp("authz")
    url = f"sqlite:///{root / 'admin.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        create_user(session, "admin1", Role.admin, password=PASSWORD, actor="test")
        create_user(session, "auditor1", Role.auditor, password=PASSWORD, actor="test")
        session.commit()
    (root / "access-token").write_text(ACCESS_TOKEN + "\n")
    return AdminSettings(
        profile="test",
        db_url=url,
        data_dir=root,
        throttle_per_client=10_000,
        access_token_file=root / "access-token",
    )


@pytest.fixture(scope="module")
def one_time_password(app_settings: AdminSettings) -> str:
    """The generated password of an admin who has not changed it yet."""
    with Session(make_engine(app_settings.database_url)) as session:
        _, generated = create_user(session, "fresh1", Role.admin, password=None, actor="test")
        session.commit()
    assert generated is not None
    return generated


def routes(settings: AdminSettings) -> list[tuple[str, str]]:
    """Every operation the app publishes in its OpenAPI document."""
    schema = create_app(settings).openapi()
    return sorted(
        (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
        for path, operations in schema["paths"].items()
        for method in operations
    )


ROUTES = routes(AdminSettings(profile="test", db_url="sqlite://", data_dir=Path("/tmp")))


@pytest.fixture
def client(app_settings: AdminSettings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as test_client:
        yield test_client


def as_role(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200
    return {"X-CSRF-Token": response.json()["csrf_token"]}


def test_routes_are_discovered() -> None:
    assert ("POST", "/api/v1/auth/login") in ROUTES
    assert ("GET", "/api/v1/users") in ROUTES
    assert set(ROUTES) >= ACCESS_TOKEN_ONLY
    # Routing (issue 24 item 5): GET for admins and auditors, changes for admins only.
    assert {("GET", "/api/v1/routing"), ("PUT", "/api/v1/routing")} <= set(ROUTES)
    assert ("DELETE", "/api/v1/routing") in ROUTES


@pytest.mark.parametrize(("method", "path"), sorted(ACCESS_TOKEN_ONLY))
def test_the_access_token_opens_the_access_routes(
    client: TestClient, method: str, path: str
) -> None:
    headers = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    body = {"gateway": "gw1", "rows": []} if method == "POST" else None
    assert client.request(method, path, json=body, headers=headers).status_code == 200
    wrong = {"Authorization": "Bearer not-the-token"}
    assert client.request(method, path, json=body, headers=wrong).status_code == 401


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_anonymous(client: TestClient, method: str, path: str) -> None:
    status = client.request(method, path, json={}).status_code
    if (method, path) in PUBLIC:
        assert status not in (401, 403)
    else:
        assert status == 401


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_auditor(client: TestClient, method: str, path: str) -> None:
    headers = as_role(client, "auditor1")
    status = client.request(method, path, json={}, headers=headers).status_code
    if (method, path) in ACCESS_TOKEN_ONLY:
        assert status == 401
    elif method == "GET" or (method, path) in PUBLIC | SELF_SERVICE | AUDITOR_ONLY | READERS_ASK:
        assert status not in (401, 403)
    else:
        assert status == 403


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_admin(client: TestClient, method: str, path: str) -> None:
    headers = as_role(client, "admin1")
    status = client.request(method, path, json={}, headers=headers).status_code
    if (method, path) in ACCESS_TOKEN_ONLY:
        assert status == 401
    elif (method, path) in AUDITOR_ONLY:
        assert status == 403
    else:
        assert status not in (401, 403)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_one_time_password_allows_only_password_change_or_logout(
    client: TestClient, one_time_password: str, method: str, path: str
) -> None:
    headers = as_role(client, "fresh1", one_time_password)
    response = client.request(method, path, json={}, headers=headers)
    if (method, path) in ACCESS_TOKEN_ONLY:
        assert response.status_code == 401  # a session, of any account, is not the token
    elif (method, path) in PUBLIC | SELF_SERVICE | OWN_SESSION:
        assert response.status_code not in (401, 403)
    else:
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "PasswordChangeRequiredError"
        assert "POST /api/v1/auth/password" in error["message"]
