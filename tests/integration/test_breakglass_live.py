"""Break-glass against a live OpenZiti controller, with a vendor engineer's real `ziti`.

Approval activates the window on the controller (one identity per engineer, a Dial policy
to exactly the scoped services, the edge router policy); the engineer enrolls, dials a
scoped service and holds a TCP connection; a service outside the scope is refused; a
revoke, a seal and an expiry each kill that connection and delete what activation made.
The expiry is the reaper's alone: the admin service makes no call after the approval.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.db.engine import make_engine
from appliance.db.models import AuditEvent
from tests.integration.overlay import (
    AUDITOR,
    POLL,
    VENDOR_NS,
    VENDOR_SITE_ADDRESS,
    Site,
    VendorConnection,
    enroll,
    in_namespace,
    overlay_site,
    tunneler,
    vendor_connection,
    vendor_namespace,
)
from tests.integration.support import free_port

API = "/breakglass"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    # The vendor dials from a network namespace of its own, through the site side of its
    # link; enrollment tokens of one minute, so a test can see one expire.
    with (
        vendor_namespace(),
        overlay_site(
            tmp_path_factory.mktemp("breakglass"),
            VENDOR_SITE_ADDRESS,
            breakglass_enrollment_minutes=1,
        ) as running,
    ):
        # The quickstart's router doubles as the vendor access router here.
        router = running.ctrl.api("GET", "/edge-routers")["data"][0]
        running.ctrl.api(
            "PATCH",
            f"/edge-routers/{router['id']}",
            {"roleAttributes": [*router["roleAttributes"], "vendor-access"]},
        )
        yield running


def _open_window(site: Site, engineer: str, minutes: int = 30) -> tuple[int, str]:
    """alice requests, bob approves: the window id and the engineer's one-time JWT."""
    site.login("alice")
    made = site.post(
        f"{API}/windows",
        {
            "reason": "gateway crash",
            "ticket": f"CASE-{engineer}",
            "scope": ["echo"],
            "engineers": [engineer],
            "duration_minutes": minutes,
        },
    )
    assert made.status_code == 201, made.text
    wid = int(made.json()["id"])
    site.login("bob")
    approved = site.post(f"{API}/windows/{wid}/approve", {"note": "ok"})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["window"]["state"] == "active"
    [handover] = body["handovers"]
    return wid, str(handover["jwt"])


@contextlib.contextmanager
def _vendor_connection(site: Site, jwt: str, name: str) -> Iterator[VendorConnection]:
    """From the vendor namespace, the engineer enrolls and holds a TCP connection to the
    scoped echo service through `ziti tunnel proxy`."""
    identity = enroll(site.ziti, jwt, site.work / f"{name}.json", VENDOR_NS)
    port = free_port()
    with (
        tunneler(
            site.ziti,
            site.work / f"{name}.log",
            "proxy",
            f"echo:{port}",
            *POLL,
            "-i",
            str(identity),
            namespace=VENDOR_NS,
        ),
        vendor_connection(VENDOR_NS, port) as held,
    ):
        yield held


def test_approval_activates_exactly_the_scope_on_the_controller(site: Site) -> None:
    wid, jwt = _open_window(site, "eve")
    identity = site.ctrl.find("identities", f"vendor-w{wid}-eve")
    assert identity is not None
    assert set(identity["roleAttributes"]) >= {"breakglass", f"breakglass-w{wid}"}
    dial = [
        p
        for p in site.ctrl.api("GET", "/service-policies?limit=500")["data"]
        if f"@{identity['id']}" in p["identityRoles"] or f"#breakglass-w{wid}" in p["identityRoles"]
    ]
    assert [(p["type"], p["serviceRoles"]) for p in dial] == [
        ("Dial", [f"@{site.services['echo']}"])
    ]
    routers = [
        p
        for p in site.ctrl.api("GET", "/edge-router-policies?limit=500")["data"]
        if p["name"].startswith(f"breakglass-w{wid}") or f"#breakglass-w{wid}" in p["identityRoles"]
    ]
    assert routers and routers[0]["edgeRouterRoles"] == ["#vendor-access"]

    # In scope: the engineer's connection works; out of scope ("tiny"): nothing answers.
    with _vendor_connection(site, jwt, "eve") as held:
        port = free_port()
        with tunneler(
            site.ziti,
            site.work / "eve-tiny.log",
            "proxy",
            f"tiny:{port}",
            *POLL,
            "-i",
            str(site.work / "eve.json"),
        ):
            time.sleep(4)
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=3)

        site.login("alice")
        held.mark()
        revoked = site.post(f"{API}/windows/{wid}/revoke", {"reason": "done"})
        assert revoked.status_code == 200, revoked.text
        assert held.dead_within(30) is not None
    assert revoked.json()["state"] == "revoked"
    assert site.ctrl.find("identities", f"vendor-w{wid}-eve") is None
    _assert_nothing_left(site, wid)
    confirmed = _audit(site, "breakglass.end-confirmed", f"window:{wid}")
    assert confirmed and confirmed[-1].details["decision_to_confirmation_ms"] >= 0
    _evidence_shows_what_eve_did(site, wid)


def test_sealing_the_site_cuts_the_vendor(site: Site) -> None:
    wid, jwt = _open_window(site, "mallory")
    with _vendor_connection(site, jwt, "mallory") as held:
        site.login("alice")
        held.mark()
        sealed = site.post(f"{API}/seal")
        assert sealed.status_code == 200, sealed.text
        assert wid in sealed.json()["ended"]
        assert held.dead_within(30) is not None
    _assert_nothing_left(site, wid)


def test_the_reaper_ends_a_window_on_time_with_the_admin_service_idle(site: Site) -> None:
    """A one-minute window, the real reaper process, no admin-service call after approval.

    Meanwhile a 30-minute window's engineer who waits past the token's one minute cannot
    enroll any more.
    """
    late_window, late_jwt = _open_window(site, "late")
    wid, jwt = _open_window(site, "trent", minutes=1)
    config = _reaper_config(site)
    with (
        _reaper(config, site.work / "reaper.log"),
        _vendor_connection(site, jwt, "trent") as held,
    ):
        held.mark()
        dead = held.dead_within(120)
    assert dead is not None, "the vendor's connection outlived the window"
    token = site.work / "late.jwt"
    token.write_text(late_jwt)
    enroll_late = [str(site.ziti), "edge", "enroll", "--jwt", str(token)]
    refused = subprocess.run(
        in_namespace(VENDOR_NS, [*enroll_late, "--out", str(site.work / "late.json")]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0, "an expired enrollment token still enrolled"
    assert site.ctrl.find("identities", f"vendor-w{late_window}-late") is not None  # only late
    assert _audit(site, "breakglass.expire", f"window:{wid}")
    assert site.ctrl.find("identities", f"vendor-w{wid}-trent") is None
    _assert_nothing_left(site, wid)


def _reaper_config(site: Site) -> Path:
    """The reaper's settings: the same database, controller and event log as the site."""
    config = site.work / "reaper.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "profile": "test",
                "db_url": site.db_url,
                "data_dir": str(site.work),
                "controller_url": site.ctrl.url,
                "controller_password_file": str(site.settings.controller_password_file),
                "controller_ca": str(site.ctrl.ca),
                "controller_events_file": str(site.ctrl.events),
            }
        )
    )
    return config


def _export_evidence(site: Site, wid: int) -> Path:
    site.login(AUDITOR)
    try:
        answer = site.api.get(f"/api/v1/breakglass/windows/{wid}/evidence")
        assert answer.status_code == 200, answer.text
    finally:
        site.login("alice")
    archive = site.work / f"evidence-{wid}.tar"
    archive.write_bytes(answer.content)
    return archive


@contextlib.contextmanager
def _reaper(config: Path, log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "admin", "reaper", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _assert_nothing_left(site: Site, wid: int) -> None:
    mark = f"breakglass-w{wid}"
    for collection in ("service-policies", "edge-router-policies"):
        left = [
            p["name"]
            for p in site.ctrl.api("GET", f"/{collection}?limit=500")["data"]
            if mark in p["name"] or f"#{mark}" in p["identityRoles"]
        ]
        assert left == [], f"{collection} left behind: {left}"
    assert site.ctrl.api("GET", f'/identities?filter=name contains "vendor-w{wid}-"')["data"] == []


def _audit(site: Site, action: str, target: str) -> list[AuditEvent]:
    with Session(make_engine(site.db_url)) as db:
        return list(
            db.scalars(
                select(AuditEvent).where(AuditEvent.action == action, AuditEvent.target == target)
            )
        )


def _evidence_shows_what_eve_did(site: Site, wid: int) -> None:
    """The reaper records the controller's events of eve's identity in her window's log;
    the window's evidence export carries them and verifies offline."""
    config = _reaper_config(site)
    deadline = time.monotonic() + 30
    while True:  # the controller writes its events a moment after the fact
        subprocess.run(
            [
                sys.executable,
                "-m",
                "appliance",
                "admin",
                "reaper",
                "--once",
                "--config",
                str(config),
            ],
            check=True,
            capture_output=True,
        )
        circuits = _audit(site, "breakglass.circuit", f"window:{wid}")
        kinds = {c.details["event"] for c in circuits}
        if {"created", "deleted"} <= kinds or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {"created", "deleted"} <= kinds, [c.details for c in circuits]
    created = next(c for c in circuits if c.details["event"] == "created")
    assert created.actor == "vendor:eve"
    assert created.details["service"] == "echo"  # named, not only the controller's id
    deleted = next(c for c in circuits if c.details["event"] == "deleted")
    assert deleted.details["duration_ms"] > 0
    assert _audit(site, "breakglass.login", f"window:{wid}")  # her API session

    # Ingested once only: another pass records nothing new.
    before = len(_audit(site, "breakglass.circuit", f"window:{wid}"))
    subprocess.run(
        [sys.executable, "-m", "appliance", "admin", "reaper", "--once", "--config", str(config)],
        check=True,
        capture_output=True,
    )
    assert len(_audit(site, "breakglass.circuit", f"window:{wid}")) == before

    evidence = _export_evidence(site, wid)
    verified = subprocess.run(
        [sys.executable, "-m", "appliance", "audit", "verify", str(evidence)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
