"""Identity states follow the controller by themselves (ADR 0016): the background sync."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from appliance.admin.identity_watch import IdentityWatch
from appliance.admin.services import identities as service
from appliance.admin.settings import AdminSettings, SettingsError, load_settings
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, Identity, IdentityKind
from tests.unit.admin_access_site import make_site
from tests.unit.fake_controller import FakeController


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    yield sessionmaker(engine, expire_on_commit=False)


def make(sessions: sessionmaker[Session], controller: FakeController, name: str) -> None:
    with sessions() as db:
        service.create_identity(
            db,
            controller,
            name=name,
            kind=IdentityKind.user,
            role_attributes=[],
            enrollment_minutes=60,
            actor="admin1",
            client="",
        )


def syncs(sessions: sessionmaker[Session]) -> list[AuditEvent]:
    with sessions() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == "identity.sync")))


def test_a_pass_syncs_and_audits_only_a_change(sessions: sessionmaker[Session]) -> None:
    controller = FakeController()
    make(sessions, controller, "alice")
    watch = IdentityWatch(sessions, lambda: controller, 15)
    first = watch.run_once()
    assert first is not None and first.changed
    assert watch.run_once() is not None and len(syncs(sessions)) == 1  # the second: quiet
    controller.identities["z1"]["disabled"] = True
    watch.run_once()
    with sessions() as db:
        row = db.scalar(select(Identity))
        assert row is not None and row.state == "disabled"
    records = syncs(sessions)
    assert len(records) == 2 and records[-1].actor == "identity-watch"


def test_a_controller_outage_is_logged_once_and_never_raised(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    controller = FakeController()
    watch = IdentityWatch(sessions, lambda: controller, 15)
    controller.down = True
    with caplog.at_level(logging.INFO, logger="appliance.admin.identity_watch"):
        assert watch.run_once() is None
        assert watch.run_once() is None
        controller.down = False
        assert watch.run_once() is not None
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "identity sync failed" in m]) == 1
    assert "ctrl.test" in messages[0]
    assert messages[-1] == "identity sync works again"
    # Audited once for the outage, not once a pass.
    failed = [r for r in syncs(sessions) if r.outcome == "error"]
    assert len(failed) == 1
    assert failed[0].actor == "identity-watch"
    assert "ctrl.test" in failed[0].details["error"]


def test_the_service_starts_the_watch_with_a_controller(tmp_path: Path) -> None:
    password = tmp_path / "ctrl-password"
    password.write_text("secret")
    for site in make_site(tmp_path, controller_password_file=password, identity_sync_seconds=0.2):
        site.identity("alice")
        site.controller.identities["z1"]["enrolled"] = True
        deadline = time.monotonic() + 10
        state = ""
        while time.monotonic() < deadline and state != "enrolled":
            time.sleep(0.1)
            with site.db() as db:
                state = db.scalar(select(Identity.state)) or ""
        assert state == "enrolled"


def test_no_watch_without_a_controller_or_when_off(tmp_path: Path) -> None:
    for site in make_site(tmp_path):
        assert site.client.app.state.identity_watch is None  # type: ignore[attr-defined]


def test_the_site_timezone_must_be_known(tmp_path: Path) -> None:
    assert AdminSettings(profile="test", site_timezone="Europe/Berlin").site_timezone
    with pytest.raises(SettingsError, match="expected an IANA timezone name.*'Mars/Olympus'"):
        load_settings(None, profile="test", site_timezone="Mars/Olympus")
