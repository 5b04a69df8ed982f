"""A window's scope is a choice among the services the installer lists for the site:
the request form ticks them, the API lists them, and any other name is refused with the
list in the answer (fake controller)."""

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
from appliance.breakglass.policy import BreakglassPolicy
from appliance.breakglass.scope import ScopeChoice, scope_choices
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Role
from tests.unit.fake_controller import FakeController
from tests.unit.test_admin_pages import PASSWORD, log_in

OFFERED = ["vllm", "vendor-shell-gpu1", "llm-gateway", "vendor-shell-gw1"]


def _policy(services: tuple[str, ...] | None) -> BreakglassPolicy:
    return BreakglassPolicy(60, 10, ("#vendor-access",), services=services)


def test_choices_put_the_vendor_shells_first_and_name_their_hosts() -> None:
    assert scope_choices(_policy(tuple(OFFERED))) == [
        ScopeChoice("vendor-shell-gpu1", "gpu1"),
        ScopeChoice("vendor-shell-gw1", "gw1"),
        ScopeChoice("llm-gateway", None),
        ScopeChoice("vllm", None),
    ]
    assert scope_choices(_policy(())) == []
    assert scope_choices(_policy(None)) is None  # a site installed before the list


def _app(tmp_path: Path, services: list[str] | None) -> TestClient:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        for name, role in (("alice", Role.admin), ("audrey", Role.auditor)):
            create_user(session, name, role, password=PASSWORD, actor="test")
        session.commit()
    settings = AdminSettings(
        profile="test", db_url=url, data_dir=tmp_path, breakglass_services=services
    )
    app = create_app(settings, boot_clock=lambda: BootClock("boot-a", 50.0))
    fake = FakeController()
    fake.services = list(services or [])
    app.state.controller = fake
    return TestClient(app)


@pytest.fixture
def listed(tmp_path: Path) -> Iterator[TestClient]:
    with _app(tmp_path, OFFERED) as client:
        yield client


def _ask(csrf: str, scope: list[str]) -> dict[str, object]:
    return {
        "csrf_token": csrf,
        "reason": "vLLM slow on gpu1",
        "ticket": "CASE-3",
        "scope": scope,
        "engineers": "eve",
        "duration_minutes": "30",
    }


def test_the_form_offers_the_sites_services_and_takes_the_ticked_ones(
    listed: TestClient,
) -> None:
    csrf = log_in(listed, "alice")
    page = listed.get("/breakglass").text
    boxes = re.findall(r'<input type="checkbox" name="scope" value="([^"]+)">', page)
    assert boxes == ["vendor-shell-gpu1", "vendor-shell-gw1", "llm-gateway", "vllm"]
    assert "Shell on gpu1 (recorded)" in page
    made = listed.post("/breakglass/windows", data=_ask(csrf, ["vendor-shell-gpu1", "vllm"]))
    assert made.status_code == 200 and 'id="window-1"' in made.text
    window = listed.get("/api/v1/breakglass/windows/1").json()
    assert window["scope"] == ["vendor-shell-gpu1", "vllm"]


def test_a_name_the_site_does_not_offer_is_refused_with_the_list(listed: TestClient) -> None:
    csrf = log_in(listed, "alice")
    refused = listed.post("/breakglass/windows", data=_ask(csrf, ["ssh-gw1"]))
    assert refused.status_code == 422
    assert "ssh-gw1: not a service this site offers a window" in refused.text
    assert "vendor-shell-gpu1" in refused.text  # what it does offer
    nothing = listed.post("/breakglass/windows", data=_ask(csrf, []))
    assert nothing.status_code == 422 and "a window needs a scope" in nothing.text
    api = listed.post(
        "/api/v1/breakglass/windows",
        headers={"X-CSRF-Token": csrf},
        json={
            "reason": "r",
            "ticket": "t",
            "scope": ["vendor-shell-ctrl1"],
            "engineers": ["eve"],
            "duration_minutes": 5,
        },
    )
    assert api.status_code == 422, api.text
    assert "vendor-shell-ctrl1: not a service this site offers" in api.text


def test_the_api_lists_the_choices_for_admins_and_auditors(listed: TestClient) -> None:
    assert listed.get("/api/v1/breakglass/services").status_code == 401
    log_in(listed, "audrey")
    answer = listed.get("/api/v1/breakglass/services")
    assert answer.status_code == 200
    assert answer.json()["listed"] is True
    assert answer.json()["services"][0] == {"name": "vendor-shell-gpu1", "shell_host": "gpu1"}


def test_a_site_without_the_list_keeps_the_typed_scope(tmp_path: Path) -> None:
    with _app(tmp_path, None) as client:
        csrf = log_in(client, "alice")
        page = client.get("/breakglass").text
        assert 'type="checkbox" name="scope"' not in page
        assert '<input name="scope" required' in page
        made = client.post("/breakglass/windows", data=_ask(csrf, ["anything, else"]))
        assert made.status_code == 200 and 'id="window-1"' in made.text
        assert client.get("/api/v1/breakglass/services").json() == {
            "listed": False,
            "services": [],
        }
