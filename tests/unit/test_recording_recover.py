"""A recording cut short (its recorder killed) is sealed at the proxy's next start over
what its chain covers, and its session becomes a record of its window like any other."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from appliance.audit.recordings.verify import read_events, verify_recording
from appliance.breakglass.recording.interface import SessionInfo
from appliance.breakglass.recording.recorder import RecorderLimits
from appliance.breakglass.recording.recover import CUT_SHORT, seal_cut_short, unsealed_folders
from appliance.breakglass.shell.serve import seal_cut_short_recordings
from appliance.db.models import AuditEvent
from tests.unit.recording_sample import INFO, Clock, shell_session, start
from tests.unit.test_recording_evidence import window

KEY = ec.generate_private_key(ec.SECP384R1())


def _killed(root: Path, info: SessionInfo = INFO) -> Path:
    """A recording whose recorder died: three chunks chained, one open and never chained."""
    clock = Clock()
    recording = start(root, KEY, clock, limits=RecorderLimits(chunk_seconds=1), info=info)
    shell_session(recording, clock)  # closes chunks as the clock moves
    recording.channel_opened(1, "exec")
    recording.exec_request(1, "cat /etc/os-release")
    recording.output(1, b"PRETTY_NAME=Debian\n")  # in the open chunk: written, not chained
    # The recording's own thread chains closed chunks; here it finished before the "kill"
    # (when it has not, recovery sets aside every chunk after the chain the same way).
    recording._wait_for_sync()
    return recording.folder


def test_a_killed_recording_is_sealed_over_its_chain_and_keeps_its_tail_aside(
    tmp_path: Path,
) -> None:
    folder = _killed(tmp_path)
    with (folder / "chain").open("ab") as chain:
        chain.write(b"9 deadbeef")  # a crash mid-append
    before = verify_recording(folder, KEY.public_key(), allow_unsealed=True)
    assert before.unchained_bytes > 0
    assert list(unsealed_folders(tmp_path)) == [folder]

    recovered = seal_cut_short(folder, KEY)

    report = verify_recording(folder, KEY.public_key(), window_id=INFO.window_id)
    assert report.sealed and report.end_reason == CUT_SHORT
    assert [c.name for c in report.chunks] == [c.name for c in before.chunks]
    assert report.manifest_sha256 == recovered.sealed.manifest_sha256
    assert recovered.info == INFO
    manifest = json.loads((folder / "manifest.json").read_text())
    [tail] = manifest["recovered"]["unchained"]
    assert tail["size"] == before.unchained_bytes
    assert b"PRETTY_NAME" in (folder / tail["name"]).read_bytes()  # kept, for a person
    assert manifest["recovered"]["partial_chain_line_bytes"] == len(b"9 deadbeef")
    # What plays is what the chain covers: the typed command, not the unchained output.
    kinds = [e[2] for e in read_events(list(report.chunks))]
    assert "output" in kinds and "exec" not in kinds
    assert list(unsealed_folders(tmp_path)) == []


def test_the_proxy_seals_cut_short_recordings_and_records_them_at_start(
    db: Session, tmp_path: Path
) -> None:
    parent = window(db)
    db.commit()
    root = tmp_path / "recordings"
    info = SessionInfo(parent.id, "s-killed", "eve", "gpu1")
    folder = _killed(root, info)
    broken = _killed(root, SessionInfo(parent.id, "s-broken", "eve", "gpu1"))
    (broken / "chunk-000001.jsonl").write_bytes(b'[0.0, 0, "output", "forged"]\n')

    sessions = sessionmaker(db.get_bind(), class_=Session)
    assert seal_cut_short_recordings(root, KEY, sessions) == 1

    row = db.scalars(select(AuditEvent).where(AuditEvent.action == "breakglass.recording")).one()
    assert row.target == f"window:{parent.id}"
    assert row.details["session_id"] == "s-killed"
    assert row.details["end_reason"] == CUT_SHORT
    assert (
        verify_recording(folder, KEY.public_key()).manifest_sha256
        == (row.details["manifest_sha256"])
    )
    assert not (broken / "manifest.json").exists()  # evidence of tampering is left as found
    # A second start finds nothing new to seal; the altered one stays for a person.
    assert seal_cut_short_recordings(root, KEY, sessions) == 0
