"""schemathesis against the published OpenAPI document: no input makes the API answer 5xx.

Runs in-process on the ASGI app with a real SQLite database and a fake controller (the
real one cannot be built here), as an anonymous caller and as a logged-in admin.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Role
from tests.unit.fake_controller import FakeController

PASSWORD = "a-long-test-password"


@pytest.fixture(scope="module")
def app_and_auth(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, str]]:
    root = tmp_path_factory.mktemp("schema")
    url = f"sqlite:///{root / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        create_user(session, "admin1", Role.admin, password=PASSWORD, actor="test")
        session.commit()
    app = create_app(
        AdminSettings(
            profile="test",
            db_url=url,
            data_dir=root,
            throttle_per_client=1_000_000,
            lockout_threshold=1_000_000,
        )
    )
    app.state.controller = FakeController()
    with TestClient(app) as client:
        login = client.post("/api/v1/auth/login", json={"username": "admin1", "password": PASSWORD})
        cookie = login.cookies["appliance_session"]
        return app, {
            "Cookie": f"appliance_session={cookie}",
            "X-CSRF-Token": login.json()["csrf_token"],
        }


def test_no_server_errors(app_and_auth: tuple[object, dict[str, str]]) -> None:
    app, auth = app_and_auth
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: schemathesis.Case) -> None:
            if case.path in ("/api/v1/auth/logout", "/api/v1/auth/password"):
                # Ending or changing the shared admin session would starve the other cases.
                response = case.call()
            else:
                response = case.call(headers={**(case.headers or {}), **auth})
            assert response.status_code < 500, (case.method, case.path, response.text)
            content_type = response.headers.get("content-type") or [""]
            if case.path == "/api/v1/usage.csv" and response.status_code == 200:
                assert content_type[0].startswith("text/csv")  # the one non-JSON answer
            else:
                assert response.status_code == 204 or content_type[0].startswith("application/json")

        check()
        checked += 1
    assert checked >= 14  # every operation of the API was exercised
