"""The admin service against a live OpenZiti controller, with real `ziti` clients as its users.

A quickstart controller and edge router run on loopback from the supplied `ziti`; the
admin service (its own API, in process) creates, enrolls, grants, disables and deletes;
`ziti edge enroll`, `ziti tunnel host` and `ziti tunnel proxy` are the devices. Skipped,
with one line naming what to supply, where no OpenZiti program is supplied.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
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
from tests.integration.overlay import (
    ADMIN_PASSWORD,
    Controller,
    echo_server,
    enroll,
    host_service,
    model_server,
    quickstart,
    supplied_program,
    tunneler,
    wait_terminator,
)
from tests.integration.support import free_port

PASSWORD = "a-long-test-password"
#: A proxy only learns of services granted after it started when it polls (off by default).
POLL = ("--svcPollRate", "2")


@dataclass
class Site:
    """The overlay, the admin service in front of it, and where the tests keep files."""

    ctrl: Controller
    api: TestClient
    csrf: str
    db_url: str
    ziti: Path
    work: Path
    model_service_id: str
    echo_service_id: str

    def post(self, path: str, body: object = None) -> httpx.Response:
        return self.api.post(f"/api/v1{path}", json=body, headers={"X-CSRF-Token": self.csrf})

    def delete(self, path: str) -> httpx.Response:
        return self.api.delete(f"/api/v1{path}", headers={"X-CSRF-Token": self.csrf})

    def create(self, name: str, kind: str = "device") -> tuple[int, str]:
        made = self.post("/identities", {"name": name, "kind": kind})
        assert made.status_code == 201, made.text
        body = made.json()
        return int(body["identity"]["id"]), str(body["jwt"])

    def enrolled(self, name: str, kind: str = "device") -> tuple[int, Path]:
        row, jwt = self.create(name, kind)
        return row, enroll(self.ziti, jwt, self.work / f"{name}.json")

    def ziti_id(self, name: str) -> str:
        found = self.ctrl.find("identities", name)
        assert found is not None, f"{name} is not on the controller"
        return str(found["id"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("overlay")
    ziti = supplied_program("ziti", work)
    with quickstart(ziti, work / "ctrl") as ctrl, model_server() as model, echo_server() as echo:
        db_url = f"sqlite:///{work / 'admin.db'}"
        upgrade(make_engine(db_url))
        with Session(make_engine(db_url)) as session:
            create_user(session, "alice", Role.admin, password=PASSWORD, actor="test")
            session.commit()
        secret = work / "controller.password"
        secret.write_text(ADMIN_PASSWORD)
        settings = AdminSettings(
            profile="test",
            db_url=db_url,
            data_dir=work,
            controller_url=ctrl.url,
            controller_password_file=secret,
            controller_ca=ctrl.ca,
            controller_timeout=5.0,
            audit_watch=False,
        )
        with TestClient(create_app(settings)) as api:
            login = api.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
            assert login.status_code == 200, login.text
            site = Site(ctrl, api, login.json()["csrf_token"], db_url, ziti, work, "", "")
            # The model's host: an identity the admin service enrolls, `ziti tunnel host`.
            _, host = site.enrolled("model-host", "service")
            host_id = site.ziti_id("model-host")
            site.model_service_id = host_service(ctrl, "tiny", model, host_id)
            site.echo_service_id = host_service(ctrl, "echo", echo, host_id)
            with tunneler(ziti, work / "host.log", "host", "-i", str(host)):
                wait_terminator(ctrl, site.model_service_id)
                wait_terminator(ctrl, site.echo_service_id)
                yield site


def test_identity_lifecycle_matches_what_the_controller_reports(site: Site) -> None:
    row, identity = site.enrolled("laptop-1")
    assert '"id"' in identity.read_text()  # a real identity file with its key and cert
    ziti_id = site.ziti_id("laptop-1")
    assert site.ctrl.api("GET", f"/identities/{ziti_id}")["data"]["authenticators"]["cert"]

    sync = site.post("/identities/sync")
    assert sync.status_code == 200, sync.text
    assert sync.json()["updated"]["laptop-1"] == ["pending", "enrolled"]
    assert site.api.get(f"/api/v1/identities/{row}").json()["state"] == "enrolled"

    again = site.post(f"/identities/{row}/reissue", {"enrollment_minutes": 10})
    assert again.status_code in (409, 422), again.text
    assert "already enrolled" in again.json()["error"]["message"]

    assert site.post(f"/identities/{row}/disable").status_code == 200
    assert site.ctrl.api("GET", f"/identities/{ziti_id}")["data"]["disabled"] is True
    assert site.post(f"/identities/{row}/enable").status_code == 200
    assert site.ctrl.api("GET", f"/identities/{ziti_id}")["data"]["disabled"] is False

    pending_row, _ = site.create("laptop-2")
    reissued = site.post(f"/identities/{pending_row}/reissue", {"enrollment_minutes": 10})
    assert reissued.status_code == 200, reissued.text
    pending = site.ctrl.find("identities", "laptop-2")
    assert pending is not None
    assert pending["enrollment"]["ott"]["jwt"] == reissued.json()["jwt"]

    for each in (row, pending_row):
        assert site.delete(f"/identities/{each}").status_code == 204
    assert site.ctrl.find("identities", "laptop-1") is None
    assert site.ctrl.find("identities", "laptop-2") is None


def test_a_grant_lets_an_identity_dial_the_model_and_nothing_else(site: Site) -> None:
    _, client = site.enrolled("analyst-1")
    port = free_port()
    with tunneler(
        site.ziti, site.work / "proxy-1.log", "proxy", f"tiny:{port}", *POLL, "-i", str(client)
    ):
        # Without a grant the identity cannot dial: the proxy answers nothing.
        time.sleep(3)
        assert _get(port) is None

        grant = site.post("/grants", {"subject": "@analyst-1", "model_service": "tiny"})
        assert grant.status_code == 201, grant.text
        assert grant.json()["api_key"].startswith("sk-gw-")
        answer = _eventually(lambda: _get(port), timeout=90)
        assert answer == {"model": "tiny", "path": "/v1/models"}

        assert site.delete(f"/grants/{grant.json()['id']}").status_code == 204
        assert _eventually(lambda: _get(port) is None or None, timeout=90)


def test_revoking_access_cuts_an_open_connection(site: Site) -> None:
    """Removing a grant, or disabling the identity, kills a connection already open."""
    _, client = site.enrolled("analyst-2")
    grant = site.post("/grants", {"subject": "@analyst-2", "model_service": "echo"})
    assert grant.status_code == 201, grant.text
    row = site.api.get("/api/v1/identities").json()
    row_id = next(r["id"] for r in row if r["name"] == "analyst-2")
    port = free_port()
    with tunneler(
        site.ziti, site.work / "proxy-2.log", "proxy", f"echo:{port}", *POLL, "-i", str(client)
    ):
        conn = _eventually(lambda: _echo_connection(port), timeout=90)
        with conn:
            assert site.post(f"/identities/{row_id}/disable").status_code == 200
            cut = _seconds_until_dead(conn, timeout=30)
        assert cut is not None, "the connection outlived the identity's disable by 30 s"


def test_a_controller_that_is_down_mid_operation_leaves_nothing_half_made(site: Site) -> None:
    site.ctrl.stop()
    try:
        refused = site.post("/identities", {"name": "during-outage", "kind": "device"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "ControllerUnreachableError"
    finally:
        site.ctrl.start()
    with Session(make_engine(site.db_url)) as session:
        assert session.scalar(select(Identity).where(Identity.name == "during-outage")) is None
        audited = session.scalars(
            select(AuditEvent).where(AuditEvent.target == "during-outage")
        ).all()
        assert [(e.action, e.outcome) for e in audited] == [("identity.create", "error")]
    assert site.ctrl.find("identities", "during-outage") is None
    # Back up, the same request works: the service recovered by itself.
    row, _ = site.create("during-outage")
    assert site.delete(f"/identities/{row}").status_code == 204


def _get(port: int) -> object:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _echo_connection(port: int) -> socket.socket | None:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        conn.sendall(b"ping")
        if conn.recv(16) == b"ping":
            return conn
    except OSError:
        pass
    conn.close()
    return None


def _seconds_until_dead(conn: socket.socket, *, timeout: float) -> float | None:
    """Ping every 20 ms until the connection fails; seconds that took, None if it never did."""
    start = time.monotonic()
    conn.settimeout(2)
    while time.monotonic() - start < timeout:
        try:
            conn.sendall(b"x")
            if conn.recv(16) == b"":
                return time.monotonic() - start
        except OSError:
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def _eventually(probe: object, *, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            value = probe()  # type: ignore[operator]
            if value:
                return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f} s")
