"""A sealed recording's manifest digest goes into the audit log as a record of its window."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.audit.check import check_log
from appliance.audit.recordings.verify import verify_recording
from appliance.breakglass.errors import BreakglassConflictError, BreakglassNotFoundError
from appliance.breakglass.recording.evidence import record_recording
from appliance.breakglass.recording.interface import SessionInfo
from appliance.db.models import AuditEvent, BreakglassWindow, WindowState, utcnow
from tests.unit.recording_sample import INFO, Clock, sealed_session, shell_session, start


def window(db: Session, **fields: object) -> BreakglassWindow:
    now = utcnow()
    row = BreakglassWindow(
        state=WindowState.active,
        requester="alice",
        reason="disk replacement",
        ticket="T-1",
        scope=["vendor-shell-gpu1"],
        engineers=["eve"],
        duration_minutes=60,
        created_at=now,
        decided_by="bob",
        decided_at=now,
        activated_at=now,
        ends_at=now + timedelta(hours=1),
        end_reason="",
        ziti_objects={},
        **fields,
    )
    db.add(row)
    db.flush()
    return row


def test_the_record_holds_the_manifest_digest_in_the_windows_target(
    db: Session, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    parent = window(db)
    info = SessionInfo(parent.id, INFO.session_id, INFO.engineer, INFO.host)
    clock = Clock()
    recording = start(tmp_path, key, clock, info=info)
    shell_session(recording, clock)
    sealed = recording.end("vendor logged out")
    record_recording(db, info, sealed)
    db.commit()
    row = db.scalars(select(AuditEvent).where(AuditEvent.action == "breakglass.recording")).one()
    assert row.target == f"window:{parent.id}"
    assert row.actor == "vendor:eve"
    assert row.details["manifest_sha256"] == sealed.manifest_sha256
    assert row.details["session_id"] == "s-1"
    report = verify_recording(sealed.path, key.public_key(), window_id=parent.id)
    assert report.manifest_sha256 == row.details["manifest_sha256"]  # the link an auditor checks
    assert check_log(db, key.public_key()).records == 1


def test_an_extensions_session_is_recorded_under_its_parents_target(
    db: Session, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    parent = window(db)
    extension = window(db, extends_id=parent.id)
    info = SessionInfo(extension.id, "s-2", "eve", "gpu1")
    sealed = start(tmp_path, key, Clock(), info=info).end("window ended")
    record_recording(db, info, sealed)
    row = db.scalars(select(AuditEvent).where(AuditEvent.action == "breakglass.recording")).one()
    assert row.target == f"window:{parent.id}"


def test_a_recording_of_no_window_or_another_engineer_is_refused(
    db: Session, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    sealed = sealed_session(tmp_path, key)
    with pytest.raises(BreakglassNotFoundError, match="no window 7"):
        record_recording(db, INFO, sealed)
    row = window(db)
    with pytest.raises(BreakglassConflictError, match="not 'mallory'"):
        record_recording(db, SessionInfo(row.id, "s-1", "mallory", "gpu1"), sealed)
    assert db.scalars(select(AuditEvent)).first() is None
