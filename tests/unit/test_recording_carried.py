"""A window's evidence export carries its recordings, and `audit verify` checks each one
against its audit record: one test per attack on the archive (issue 26)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session

from appliance.audit.checkpoint import AuditIntegrityError
from appliance.audit.export import ExportError, export_log
from appliance.audit.recordings.carried import (
    INDEX,
    CarriedRecordingError,
    RecordingDigestMismatchError,
    RecordingNotCarriedError,
    UnrecordedRecordingError,
    carry,
)
from appliance.audit.recordings.errors import (
    ChunkAlteredError,
    ChunksReorderedError,
    RecordingFileMissingError,
    WrongWindowError,
)
from appliance.audit.verify import verify_export
from appliance.breakglass.recording.evidence import record_recording, recorded_sessions
from appliance.breakglass.recording.interface import SessionInfo
from appliance.breakglass.recording.recorder import RecorderLimits
from appliance.breakglass.records import window_target
from appliance.db.models import utcnow
from tests.unit.recording_sample import Clock, shell_session, start
from tests.unit.test_recording_evidence import window

Members = dict[str, bytes]


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def record_session(
    db: Session, root: Path, key: ec.EllipticCurvePrivateKey, window_id: int, session: str
) -> None:
    """A real recording of three chunks under ``root``, sealed and recorded in the log."""
    info = SessionInfo(window_id, session, "eve", "gpu1")
    clock = Clock()
    recording = start(root, key, clock, limits=RecorderLimits(chunk_seconds=1.0), info=info)
    shell_session(recording, clock)
    record_recording(db, info, recording.end("vendor logged out"))
    db.commit()


def export(
    db: Session, root: Path, key: ec.EllipticCurvePrivateKey, window_id: int, out: Path
) -> Path:
    """The window's evidence export, as the API makes it."""
    target = window_target(window_id)
    export_log(
        db,
        key,
        since=utcnow() - timedelta(hours=1),
        until=utcnow() + timedelta(seconds=1),
        types=["breakglass"],
        targets=[target],
        fmt="jsonl",
        out=out,
        actor="audrey",
        attachments=carry(root, recorded_sessions(db, target), target=target),
    )
    return out


@pytest.fixture
def evidence(
    db: Session, tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, int, Path]:
    """Window 1 with two recorded sessions, window 2 with one; window 1's evidence."""
    root = tmp_path / "recordings"
    first, second = window(db), window(db)
    record_session(db, root, key, first.id, "s-1")
    record_session(db, root, key, first.id, "s-2")
    record_session(db, root, key, second.id, "s-9")
    return export(db, root, key, first.id, tmp_path / "evidence.tar"), first.id, root


def read(path: Path) -> Members:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def rewrite(path: Path, change: Callable[[Members], Members]) -> Path:
    """The archive with its members changed (a tamperer's copy, beside the original)."""
    members = change(read(path))
    out = path.with_name("tampered.tar")
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def test_the_evidence_carries_and_verifies_each_recording_of_its_window(
    evidence: tuple[Path, int, Path],
) -> None:
    path, wid, _ = evidence
    members = read(path)
    index = json.loads(members[INDEX])
    assert [r["path"] for r in index["recordings"]] == [
        f"recordings/window-{wid}/s-1",
        f"recordings/window-{wid}/s-2",
    ]
    assert f"recordings/window-{wid}/s-1/chunk-000003.jsonl" in members
    assert not any("s-9" in name for name in members)  # the other window's stays out
    summary = verify_export(path)
    assert summary.evidence
    assert [r.session_id for r in summary.recordings] == ["s-1", "s-2"]
    assert all(r.sealed and r.window_id == wid for r in summary.recordings)


def test_a_plain_export_says_which_recordings_it_does_not_carry(
    db: Session, tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    record_session(db, tmp_path / "recordings", key, window(db).id, "s-1")
    path = tmp_path / "plain.tar"
    export_log(
        db,
        key,
        since=utcnow() - timedelta(hours=1),
        until=utcnow() + timedelta(seconds=1),
        types=None,
        fmt="jsonl",
        out=path,
        actor="cli",
    )
    summary = verify_export(path)
    assert not summary.evidence and summary.recordings_not_carried == 1


def test_csv_evidence_is_refused_before_anything_is_written(
    db: Session, tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ExportError, match="jsonl"):
        export_log(
            db,
            key,
            since=utcnow(),
            until=utcnow(),
            types=None,
            fmt="csv",
            out=tmp_path / "e.tar",
            actor="cli",
            attachments={INDEX: b"{}"},
        )
    assert not (tmp_path / "e.tar").exists()


def test_a_changed_byte_in_a_chunk_is_named(evidence: tuple[Path, int, Path]) -> None:
    path, wid, _ = evidence
    chunk = f"recordings/window-{wid}/s-2/chunk-000002.jsonl"

    def flip(m: Members) -> Members:
        m[chunk] = m[chunk].replace(b"line", b"lime", 1)
        return m

    with pytest.raises(CarriedRecordingError, match="a chunk was changed") as caught:
        verify_export(rewrite(path, flip))
    assert isinstance(caught.value.cause, ChunkAlteredError)
    message = str(caught.value)
    assert f"recording {path.with_name('tampered.tar')}:recordings/window-{wid}/s-2" in message
    assert f"{chunk}: chunk 2: expected sha256" in message  # the archive's name, not a temp
    assert "session s-2 of window" in message and "audit record" in message


def test_a_missing_chunk_is_named(evidence: tuple[Path, int, Path]) -> None:
    path, wid, _ = evidence
    chunk = f"recordings/window-{wid}/s-1/chunk-000002.jsonl"

    def drop(m: Members) -> Members:
        del m[chunk]
        return m

    with pytest.raises(CarriedRecordingError, match="a file of the recording is missing") as e:
        verify_export(rewrite(path, drop))
    assert isinstance(e.value.cause, RecordingFileMissingError)
    assert "chunk 2 (chunk-000002.jsonl) is missing" in str(e.value)


def test_reordered_chunks_are_named(evidence: tuple[Path, int, Path]) -> None:
    path, wid, _ = evidence
    one = f"recordings/window-{wid}/s-1/chunk-000001.jsonl"
    two = f"recordings/window-{wid}/s-1/chunk-000002.jsonl"

    def swap(m: Members) -> Members:
        m[one], m[two] = m[two], m[one]
        return m

    with pytest.raises(CarriedRecordingError, match="chunks were reordered") as caught:
        verify_export(rewrite(path, swap))
    assert isinstance(caught.value.cause, ChunksReorderedError)


def test_a_recording_the_log_names_but_the_export_lacks_is_named(
    evidence: tuple[Path, int, Path],
) -> None:
    path, wid, _ = evidence
    gone = f"recordings/window-{wid}/s-2/"

    def remove(m: Members) -> Members:
        return {k: v for k, v in m.items() if not k.startswith(gone)}

    with pytest.raises(RecordingNotCarriedError, match="names recording") as caught:
        verify_export(rewrite(path, remove))
    assert caught.value.member == gone.rstrip("/")
    assert "session s-2 of window" in str(caught.value)


def test_a_recording_missing_from_the_store_at_export_is_named_by_verify(
    db: Session, tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    root = tmp_path / "recordings"
    wid = window(db).id
    record_session(db, root, key, wid, "s-1")
    for file in (root / f"window-{wid}" / "s-1").iterdir():
        file.unlink()
    path = export(db, root, key, wid, tmp_path / "evidence.tar")
    assert json.loads(read(path)[INDEX])["recordings"][0]["carried"] is False
    with pytest.raises(RecordingNotCarriedError):
        verify_export(path)


def test_another_windows_recording_in_this_windows_place_is_named(
    evidence: tuple[Path, int, Path],
) -> None:
    path, wid, root = evidence
    other = next(p for p in root.iterdir() if p.name != f"window-{wid}") / "s-9"
    place = f"recordings/window-{wid}/s-1/"

    def swap_in(m: Members) -> Members:
        m = {k: v for k, v in m.items() if not k.startswith(place)}
        m.update({place + f.name: f.read_bytes() for f in other.iterdir()})
        return m

    with pytest.raises(CarriedRecordingError, match="another window") as caught:
        verify_export(rewrite(path, swap_in))
    assert isinstance(caught.value.cause, WrongWindowError)


def test_a_recording_no_record_names_is_named(evidence: tuple[Path, int, Path]) -> None:
    path, wid, root = evidence
    other = next(p for p in root.iterdir() if p.name != f"window-{wid}")

    def add(m: Members) -> Members:
        m.update(
            {
                f"recordings/{other.name}/s-9/{f.name}": f.read_bytes()
                for f in (other / "s-9").iterdir()
            }
        )
        return m

    with pytest.raises(UnrecordedRecordingError, match="no breakglass.recording record"):
        verify_export(rewrite(path, add))


def test_another_sealed_recording_of_the_same_window_is_not_the_recorded_one(
    evidence: tuple[Path, int, Path],
) -> None:
    path, wid, _ = evidence
    one, two = f"recordings/window-{wid}/s-1/", f"recordings/window-{wid}/s-2/"

    def swap(m: Members) -> Members:
        moved = {k.replace(two, one): v for k, v in m.items() if k.startswith(two)}
        m = {k: v for k, v in m.items() if not k.startswith(one)}
        return {**m, **moved}

    with pytest.raises(RecordingDigestMismatchError, match="not the recording the log sealed"):
        verify_export(rewrite(path, swap))


def test_recordings_without_the_index_or_in_odd_places_are_refused(
    evidence: tuple[Path, int, Path],
) -> None:
    path, _, _ = evidence

    def no_index(m: Members) -> Members:
        del m[INDEX]
        return m

    with pytest.raises(AuditIntegrityError, match="carries recordings but no recordings.json"):
        verify_export(rewrite(path, no_index))

    def odd(m: Members) -> Members:
        m["recordings/../etc/passwd"] = b"x"
        return m

    with pytest.raises(AuditIntegrityError, match="unexpected member"):
        verify_export(rewrite(path, odd))
