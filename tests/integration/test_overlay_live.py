"""The admin service against a live OpenZiti controller, with real `ziti` clients as its users.

A quickstart controller and edge router run on loopback from the supplied `ziti`; the
admin service (its own API, in process) creates, enrolls, grants, disables and deletes;
`ziti edge enroll`, `ziti tunnel host` and `ziti tunnel proxy` are the devices. Skipped,
with one line naming what to supply, where no OpenZiti program is supplied.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.db.engine import make_engine
from appliance.db.models import AuditEvent, Identity
from tests.integration.overlay import (
    POLL,
    Site,
    echo_connection,
    host_service,
    overlay_site,
    seconds_until_dead,
    tunneler,
    wait_terminator,
)
from tests.integration.support import free_port
from tests.unit.edge_api_contract import (
    ContractViolationError,
    check_response,
    edge_contract,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with overlay_site(tmp_path_factory.mktemp("overlay")) as running:
        yield running


def test_the_status_says_the_live_controller_is_reachable(site: Site) -> None:
    status = site.api.get("/api/v1/controller/status")
    assert status.status_code == 200, status.text
    assert status.json()["state"] == "reachable"
    assert status.json()["version"] == site.ctrl.api("GET", "/version")["data"]["version"]


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
        assert "api_key" not in grant.json()  # keys are per identity (ADR 0016)
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
        conn = echo_connection(port)
        with conn:
            assert site.post(f"/identities/{row_id}/disable").status_code == 200
            cut = seconds_until_dead(conn, timeout=30)
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


def test_a_frozen_controller_gives_a_clear_503_and_nothing_half_made(site: Site) -> None:
    """A controller that takes connections but answers nothing (SIGSTOP: an overloaded or
    hung one): the request fails in the configured time with a 503 that says so, nothing
    is recorded as made, the attempt is audited, and the retry after it thaws works."""
    with site.ctrl.frozen():
        started = time.monotonic()
        slow = site.post("/identities", {"name": "while-frozen", "kind": "device"})
        waited = time.monotonic() - started
    assert slow.status_code == 503, slow.text
    assert "did not answer in time" in slow.json()["error"]["message"]
    assert waited < 60  # bounded by the timeout and the retries, not by the controller
    with Session(make_engine(site.db_url)) as session:
        assert session.scalar(select(Identity).where(Identity.name == "while-frozen")) is None
        audited = session.scalars(
            select(AuditEvent).where(AuditEvent.target == "while-frozen")
        ).all()
        assert [(e.action, e.outcome) for e in audited] == [("identity.create", "error")]
    assert site.ctrl.find("identities", "while-frozen") is None
    row, _ = site.create("while-frozen")
    assert site.delete(f"/identities/{row}").status_code == 204


def test_what_a_late_create_left_on_the_controller_is_removed_by_the_retry(site: Site) -> None:
    """A create the controller applied after the client gave up leaves an identity with the
    service's mark and no row here (made directly on the controller, as it would be left);
    the next create of that name removes it, audited, and the controller ends with exactly
    the identity the admin service knows."""
    late = site.ctrl.api(
        "POST",
        "/identities",
        {
            "name": "left-behind",
            "type": "Device",
            "isAdmin": False,
            "roleAttributes": ["kind-device"],
            "enrollment": {"ott": True},
        },
    )["data"]["id"]
    row, _ = site.create("left-behind")
    on_controller = site.ctrl.api("GET", '/identities?filter=name="left-behind"')["data"]
    with Session(make_engine(site.db_url)) as session:
        known = session.get(Identity, row)
        assert known is not None
        assert [i["id"] for i in on_controller] == [known.ziti_id]
        removed = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "identity.orphan-removed")
        ).all()
        assert [r.details["ziti_id"] for r in removed] == [late]
    assert site.delete(f"/identities/{row}").status_code == 204


def test_the_admin_service_is_reachable_through_the_overlay_via_the_routers_tunneler(
    site: Site,
) -> None:
    """ADR 0004: the admin service binds 127.0.0.1 only; the edge router's own tunneler
    (host mode) offers it on the overlay; a remote admin's identity dials it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(site.api.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        router = site.ctrl.api("GET", "/edge-routers")["data"][0]
        service = host_service(site.ctrl, "appliance-admin", port, router["id"])
        wait_terminator(site.ctrl, service)
        _, remote = site.enrolled("remote-admin-1")
        site.ctrl.api(
            "POST",
            "/service-policies",
            {
                "name": "admins-dial-admin-service",
                "type": "Dial",
                "semantic": "AnyOf",
                "identityRoles": [f"@{site.ziti_id('remote-admin-1')}"],
                "serviceRoles": [f"@{service}"],
            },
        )
        local = free_port()
        with tunneler(
            site.ziti,
            site.work / "remote-admin.log",
            "proxy",
            f"appliance-admin:{local}",
            *POLL,
            "-i",
            str(remote),
        ):
            page = _eventually(lambda: _page(f"http://127.0.0.1:{local}/login"), timeout=90)
        assert "<form" in str(page)
    finally:
        server.should_exit = True
        thread.join(10)


def _page(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def _get(port: int) -> object:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _eventually(probe: Callable[[], object], *, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            value = probe()
            if value:
                return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f} s")


def test_the_live_controllers_answers_keep_the_contract_the_fakes_are_held_to(
    site: Site,
) -> None:
    """Every answer of the live controller that the client reads conforms to the published
    spec with its listed deviations, and each deviation that patches the spec is seen
    live: the list says what the real controller does, not what was guessed."""
    site.create("contract-1")
    ident = site.ctrl.find("identities", "contract-1")
    assert ident is not None
    reads = [
        "/version",
        "/identities",
        f"/identities/{ident['id']}",
        "/services",
        f"/services/{site.services['echo']}",
        "/service-policies",
        "/edge-router-policies",
        "/api-sessions",
        "/sessions",
    ]
    answers = {path: site.ctrl.api("GET", path) for path in reads}
    for path, body in answers.items():
        check_response("GET", f"/edge/management/v1{path}", 200, body)
    # What the published document alone would refuse: the deviations, seen for real.
    published = edge_contract(patched=False)
    refused = []
    for path, body in answers.items():
        try:
            published.check_response("GET", f"/edge/management/v1{path}", 200, body)
        except ContractViolationError as exc:
            refused.append(f"{path}: {str(exc).splitlines()[1].strip()[:120]}")
    print("answers the published spec alone refuses:", *refused, sep="\n  ")
