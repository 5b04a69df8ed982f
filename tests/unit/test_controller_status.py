"""Issue 14, item 5: the pages and GET /api/v1/controller/status say up front whether the
controller is reachable, unreachable (since when, what was tried) or not installed.

The probe is the controller's unauthenticated version request: faked here with a
function, and once for real against loopback sockets that refuse or never answer.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.controller_status import ControllerWatch
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Role
from appliance.ziti import ControllerUnreachableError
from tests.unit.admin_login import PASSWORD, log_in

URL = "https://ctrl.test:1280"


class Clock:
    """A monotonic clock and a wall clock that the test moves together, by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime(2026, 11, 28, 15, 0, tzinfo=UTC) + timedelta(seconds=self.now)


class Probe:
    """Answers like the controller's version request, or fails like an outage."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise ControllerUnreachableError(f"cannot reach {URL}: connection refused", url=URL)
        return "v2.0.3"


def installed(tmp_path: Path, **overrides: object) -> AdminSettings:
    """Settings of a site whose admin settings name a controller."""
    secret = tmp_path / "controller.password"
    secret.write_text("unused\n")
    values: dict[str, object] = {
        "profile": "test",
        "db_url": f"sqlite:///{tmp_path / 'admin.db'}",
        "data_dir": tmp_path,
        "controller_url": URL,
        "controller_password_file": secret,
        **overrides,
    }
    return AdminSettings(**values)  # type: ignore[arg-type]


def test_no_controller_in_the_settings_is_not_installed(tmp_path: Path) -> None:
    probe = Probe()
    watch = ControllerWatch(AdminSettings(profile="lab", data_dir=tmp_path), probe=probe)
    status = watch.status()
    assert status.state == "not installed"
    assert "No OpenZiti controller is installed on this site" in status.summary()
    assert probe.calls == 0  # nothing to probe


def test_unreachable_says_since_when_and_what_was_tried(tmp_path: Path) -> None:
    clock, probe = Clock(), Probe()
    watch = ControllerWatch(installed(tmp_path), probe=probe, clock=clock, wall=clock.wall)
    assert watch.status().state == "reachable"
    probe.down = True
    clock.now += 5
    first = watch.status()
    assert first.state == "unreachable"
    assert first.tried == f"GET {URL}/edge/management/v1/version (timeout 2 s)"
    assert "connection refused" in first.detail
    clock.now += 5
    second = watch.status()
    assert second.since == first.since == first.checked_at  # the same outage
    assert second.checked_at == first.checked_at + timedelta(seconds=5)
    assert second.summary().startswith(
        f"Controller {URL} is unreachable since 2026-11-28 15:16:45 UTC. Last tried at "
        f"15:16:50 UTC: GET {URL}/edge/management/v1/version (timeout 2 s): cannot reach"
    )
    probe.down = False
    clock.now += 5
    assert watch.status().state == "reachable"
    assert watch.status().since is None


def test_a_probe_is_reused_for_a_few_seconds(tmp_path: Path) -> None:
    clock, probe = Clock(), Probe()
    watch = ControllerWatch(
        installed(tmp_path, controller_status_seconds=5), probe=probe, clock=clock
    )
    for _ in range(10):
        watch.status()
    assert probe.calls == 1
    clock.now += 5
    watch.status()
    assert probe.calls == 2


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback socket that completes the TCP handshake but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def test_a_silent_controller_holds_a_page_only_for_the_short_probe(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    settings = installed(
        tmp_path,
        controller_url=f"https://127.0.0.1:{port}",
        controller_timeout=30.0,
        controller_probe_timeout=0.5,
    )
    watch = ControllerWatch(settings)
    started = time.monotonic()
    status = watch.status()
    took = time.monotonic() - started
    watch.close()
    assert status.state == "unreachable"
    assert took < 5, f"the probe took {took:.1f} s; the controller's timeout is 30 s"
    assert (
        status.tried == f"GET https://127.0.0.1:{port}/edge/management/v1/version (timeout 0.5 s)"
    )


def test_a_refusing_controller_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    watch = ControllerWatch(installed(tmp_path, controller_url=f"https://127.0.0.1:{port}"))
    status = watch.status()
    watch.close()
    assert status.state == "unreachable"
    assert f"127.0.0.1:{port}" in status.detail


@pytest.fixture
def site(tmp_path: Path) -> Callable[..., TestClient]:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        create_user(session, "admin1", Role.admin, password=PASSWORD, actor="test")
        session.commit()

    def start(settings: AdminSettings, probe: Probe | None = None) -> TestClient:
        app = create_app(settings)
        app.state.controller_watch = ControllerWatch(settings, probe=probe)
        return TestClient(app)

    return start


def test_pages_say_up_front_that_the_controller_is_missing(
    tmp_path: Path, site: Callable[..., TestClient]
) -> None:
    settings = AdminSettings(
        profile="lab", db_url=f"sqlite:///{tmp_path / 'admin.db'}", data_dir=tmp_path
    )
    with site(settings) as client:
        log_in(client, "admin1")
        page = client.get("/")
        assert 'data-state="not installed"' in page.text
        assert "No OpenZiti controller is installed on this site" in page.text
        assert 'action="/identities"' not in page.text and 'action="/grants"' not in page.text
        assert "No OpenZiti controller" in client.get("/breakglass").text
        api = client.get("/api/v1/controller/status")
        assert api.status_code == 200
        assert api.json()["state"] == "not installed" and api.json()["url"] is None
        csrf = client.get("/api/v1/auth/me").json()["csrf_token"]
        refused = client.post(
            "/api/v1/identities",
            json={"name": "laptop", "kind": "device"},
            headers={"X-CSRF-Token": csrf},
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "ControllerNotInstalledError"
        assert "this site has no OpenZiti controller" in refused.json()["error"]["message"]


def test_pages_say_the_controller_is_unreachable_and_since_when(
    tmp_path: Path, site: Callable[..., TestClient]
) -> None:
    probe = Probe()
    probe.down = True
    with site(installed(tmp_path), probe) as client:
        log_in(client, "admin1")
        page = client.get("/")
        assert 'data-state="unreachable"' in page.text
        assert f"Controller {URL} is unreachable since" in page.text
        assert "/edge/management/v1/version" in page.text
        assert 'action="/identities"' in page.text  # it may come back: the forms stay
        body = client.get("/api/v1/controller/status").json()
        assert body["state"] == "unreachable" and body["since"] is not None
        assert body["tried"].startswith(f"GET {URL}/edge/management/v1/version")


def test_pages_say_the_controller_is_reachable(
    tmp_path: Path, site: Callable[..., TestClient]
) -> None:
    with site(installed(tmp_path), Probe()) as client:
        log_in(client, "admin1")
        assert f"Controller {URL} is reachable (version v2.0.3)" in client.get("/").text
        body = client.get("/api/v1/controller/status").json()
        assert (body["state"], body["version"]) == ("reachable", "v2.0.3")
