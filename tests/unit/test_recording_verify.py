"""Offline verification: one test per attack, each error naming the file and the problem."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.recordings.errors import (
    ChainEditedError,
    ChunkAlteredError,
    ChunksReorderedError,
    ManifestMismatchError,
    RecordingFileMissingError,
    RecordingIntegrityError,
    RecordingSignatureError,
    UnexpectedChunkError,
    UnsealedRecordingError,
    WrongWindowError,
)
from appliance.audit.recordings.layout import (
    CHAIN,
    HEADER,
    MANIFEST,
    chain_line,
    chunk_name,
    first_link,
    next_link,
)
from appliance.audit.recordings.verify import read_events, verify_recording
from appliance.breakglass.recording.recorder import RecorderLimits
from appliance.breakglass.recording.seal import sign_manifest
from appliance.errors import ApplianceError
from tests.unit.recording_sample import Clock, sealed_session, shell_session, start


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def folder(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    """A sealed recording of three chunks (tests/unit/recording_sample.py)."""
    sealed = sealed_session(tmp_path, key)
    assert sealed.chunks == 3
    return sealed.path


def verify(folder: Path, key: ec.EllipticCurvePrivateKey, **kwargs: object) -> object:
    return verify_recording(folder, key.public_key(), **kwargs)  # type: ignore[arg-type]


def test_a_sealed_recording_verifies(folder: Path, key: ec.EllipticCurvePrivateKey) -> None:
    report = verify_recording(folder, key.public_key(), window_id=7)
    assert report.sealed
    assert (report.window_id, report.session_id, report.engineer, report.host) == (
        7,
        "s-1",
        "eve",
        "gpu1",
    )
    assert report.end_reason == "vendor logged out"
    assert [p.name for p in report.chunks] == [chunk_name(n) for n in range(1, 4)]
    assert report.events == len(list(read_events(report.chunks)))
    assert report.unchained_bytes == 0
    assert report.describe().startswith("OK: sealed recording of window 7")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["events"] == report.events
    assert manifest["channels"]["0"]["typed_inputs"] == 5


def test_a_changed_byte_in_a_chunk_names_the_chunk(
    folder: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    chunk = folder / chunk_name(2)
    chunk.write_bytes(chunk.read_bytes().replace(b"line 1", b"line 9"))
    with pytest.raises(
        ChunkAlteredError, match=r"chunk-000002.jsonl: chunk 2: expected sha256"
    ) as e:
        verify(folder, key)
    assert e.value.chunk == 2
    assert e.value.line is None  # still well-formed: the line cannot be named
    assert e.value.hint and "altered" in e.value.hint


def test_a_changed_byte_that_breaks_a_line_names_the_line(
    folder: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    chunk = folder / chunk_name(1)
    lines = chunk.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"input"', b'"inpux"')
    chunk.write_bytes(b"".join(lines))
    with pytest.raises(ChunkAlteredError, match="line 2 is not an event") as e:
        verify(folder, key)
    assert (e.value.chunk, e.value.line) == (1, 2)


def test_a_missing_chunk(folder: Path, key: ec.EllipticCurvePrivateKey) -> None:
    (folder / chunk_name(3)).unlink()
    with pytest.raises(
        RecordingFileMissingError, match=r"chunk 3 \(chunk-000003.jsonl\) is missing"
    ):
        verify(folder, key)


def test_swapped_chunks(folder: Path, key: ec.EllipticCurvePrivateKey) -> None:
    one, two = folder / chunk_name(1), folder / chunk_name(2)
    data = one.read_bytes()
    one.write_bytes(two.read_bytes())
    two.write_bytes(data)
    with pytest.raises(
        ChunksReorderedError, match="holds what the chain gives chunk 2, not chunk 1"
    ):
        verify(folder, key)


def test_a_renumbered_chunk(folder: Path, key: ec.EllipticCurvePrivateKey) -> None:
    (folder / chunk_name(2)).rename(folder / chunk_name(9))
    with pytest.raises(ChunksReorderedError, match="chunk-000009.jsonl holds what the chain gives"):
        verify(folder, key)


def test_a_chain_link_edited(folder: Path, key: ec.EllipticCurvePrivateKey) -> None:
    chain = folder / CHAIN
    lines = chain.read_text().splitlines(keepends=True)
    n, digest, _link = lines[1].split()
    lines[1] = f"{n} {digest} {'0' * 64}\n"
    chain.write_text("".join(lines))
    with pytest.raises(ChainEditedError, match="line 2: expected link"):
        verify(folder, key)


def test_a_chunk_and_its_chain_rewritten_together(
    folder: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    """The attacker rewrites a chunk and recomputes the whole chain: the seal catches it."""
    chunk = folder / chunk_name(2)
    chunk.write_bytes(chunk.read_bytes().replace(b"line 1", b"line 9"))
    link = first_link((folder / HEADER).read_bytes())
    out = b""
    for n in range(1, 4):
        digest = hashlib.sha256((folder / chunk_name(n)).read_bytes()).digest()
        link = next_link(link, n, digest)
        out += chain_line(n, digest, link)
    (folder / CHAIN).write_bytes(out)
    with pytest.raises(ChainEditedError, match="line 2: chunk 2 is chained as .* the signed"):
        verify(folder, key)


def test_an_edited_manifest(folder: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path = folder / MANIFEST
    path.write_text(path.read_text().replace("vendor logged out", "idle timeout"))
    with pytest.raises(RecordingSignatureError, match="manifest.json: the signature does not"):
        verify(folder, key)


def test_the_wrong_key(folder: Path) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(RecordingSignatureError, match="signed by key .* expected key"):
        verify(folder, other)


def test_a_manifest_resigned_by_another_key(folder: Path, key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    path = folder / MANIFEST
    body = {k: v for k, v in json.loads(path.read_text()).items() if k != "signature"}
    path.write_text(json.dumps(sign_manifest(body, other)))
    with pytest.raises(RecordingSignatureError, match="signed by key"):
        verify(folder, key)
    verify(folder, other)  # it does verify with the key that signed it


def test_a_manifest_that_seals_another_header(
    folder: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    header = folder / HEADER
    header.write_text(header.read_text().replace('"eve"', '"mallory"'))
    with pytest.raises(ManifestMismatchError, match="another session header"):
        verify(folder, key)


def test_a_recording_of_another_window(folder: Path, key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(
        WrongWindowError, match="expected a recording of window 8, found one of window 7"
    ):
        verify(folder, key, window_id=8)


def test_a_chunk_added_after_the_seal(folder: Path, key: ec.EllipticCurvePrivateKey) -> None:
    (folder / chunk_name(4)).write_bytes(b'[99.0,0,"output","rm -rf /"]\n')
    with pytest.raises(UnexpectedChunkError, match="chunk-000004.jsonl"):
        verify(folder, key)


def test_a_missing_manifest_is_refused_unless_allowed(
    folder: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    (folder / MANIFEST).unlink()
    with pytest.raises(UnsealedRecordingError, match="no manifest: UNSEALED") as e:
        verify(folder, key)
    assert e.value.hint and "--allow-unsealed" in e.value.hint
    report = verify_recording(folder, key.public_key(), allow_unsealed=True)
    assert not report.sealed and len(report.chunks) == 3


def test_a_recording_cut_short_verifies_to_its_last_chained_chunk(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock, limits=RecorderLimits(chunk_seconds=1.0))
    shell_session(recording, clock)
    recording.channel_opened(3, "shell")
    recording.output(3, b"after the last link")  # in the open chunk
    recording.tick()  # chunk 2, closed, is chained (in the recorder's thread); killed now
    del recording
    folder = tmp_path / "window-7" / "s-1"
    report = verify_recording(folder, key.public_key(), window_id=7, allow_unsealed=True)
    assert not report.sealed
    assert [p.name for p in report.chunks] == [chunk_name(1), chunk_name(2)]
    assert report.unchained_bytes == (folder / chunk_name(3)).stat().st_size > 0
    text = report.describe()
    assert text.startswith("UNSEALED (cut short")
    assert f"ends at {report.duration:.1f} s, in chunk-000002.jsonl" in text
    assert "bytes after it were written but never chained" in text
    assert all(e[1] != 3 for e in read_events(report.chunks))


def test_a_chain_line_cut_by_a_crash_leaves_the_chunk_unchained(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock, limits=RecorderLimits(chunk_seconds=1.0))
    shell_session(recording, clock)
    clock.t += 1
    recording.tick()  # chunk 3 chained
    chain = recording.folder / CHAIN
    chain.write_bytes(chain.read_bytes()[:-40])  # as if the crash came amid its line
    report = verify_recording(recording.folder, key.public_key(), allow_unsealed=True)
    assert len(report.chunks) == 2
    assert report.unchained_bytes == (recording.folder / chunk_name(3)).stat().st_size


def test_two_unchained_chunks_are_not_a_cut(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock, limits=RecorderLimits(chunk_seconds=1.0))
    shell_session(recording, clock)
    shutil.copy(recording.folder / chunk_name(1), recording.folder / chunk_name(7))
    with pytest.raises(UnexpectedChunkError, match="chunk-000007.jsonl"):
        verify_recording(recording.folder, key.public_key(), allow_unsealed=True)


def test_not_a_recording(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(RecordingFileMissingError, match="session.json: missing"):
        verify(tmp_path, key)
    with pytest.raises(RecordingFileMissingError, match="expected a recording's folder"):
        verify(tmp_path / "nothing", key)


def test_every_verification_error_is_an_appliance_error_with_a_hint() -> None:
    for error in (
        ChainEditedError,
        ChunksReorderedError,
        ManifestMismatchError,
        RecordingFileMissingError,
        RecordingSignatureError,
        UnexpectedChunkError,
        WrongWindowError,
    ):
        assert issubclass(error, RecordingIntegrityError)
        assert error.hint
    assert issubclass(UnsealedRecordingError, ApplianceError) and UnsealedRecordingError.hint
