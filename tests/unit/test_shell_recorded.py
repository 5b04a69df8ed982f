"""The proxy with the real recorder (ADR 0021): a session ends as a sealed recording that
verifies offline and is a record of its window in the audit log."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from appliance.audit.recordings.verify import read_events, verify_recording
from appliance.audit.signing_key import load_or_create_key
from appliance.breakglass.records import window_target
from appliance.breakglass.shell.serve import audit_sealed, recordings_for
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent
from tests.unit.shell_fixtures import add_window, close_all, make_bench, run


def test_a_recorded_command_is_sealed_verified_and_in_the_audit_log(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    sessions = sessionmaker(engine, class_=Session, expire_on_commit=False)
    window = add_window(sessions)
    key = load_or_create_key(tmp_path / "data")
    root = tmp_path / "recordings"
    root.mkdir(mode=0o700)

    async def main() -> None:
        bench, things = await make_bench(
            tmp_path,
            sessions,
            recordings=recordings_for(root, key),
            sealed=audit_sealed(sessions),
        )
        try:
            async with await bench.vendor() as vendor:
                result = await vendor.run("uptime", encoding=None)
                assert result.exit_status == 3
        finally:
            await close_all(things)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not recorded(sessions):
            await asyncio.sleep(0.05)

    run(main())
    (folder,) = list((root / f"window-{window}").iterdir())
    report = verify_recording(folder, key.public_key(), window_id=window)
    assert report.sealed and report.engineer == "eve" and report.host == "gw1"
    events = [(kind, data) for _, _, kind, data in read_events(report.chunks)]
    assert ("exec", {"command": "uptime"}) in events
    assert ("exit", {"status": 3}) in events
    (event,) = recorded(sessions)
    assert event.target == window_target(window)
    assert event.details["session_id"] == report.session_id
    assert len(event.details["manifest_sha256"]) == 64


def recorded(sessions: sessionmaker[Session]) -> list[AuditEvent]:
    with sessions() as db:
        return list(
            db.scalars(select(AuditEvent).where(AuditEvent.action == "breakglass.recording"))
        )
