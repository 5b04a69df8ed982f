"""The recorder: events on disk when a call returns, chunks chained, and fail closed.

A full disk is simulated by the recorder's file opener (``opener``): the sink it returns
raises ``OSError(ENOSPC)`` once a byte budget is spent, as ``os.write`` does on a full
filesystem, so no tmpfs or loop device is needed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.recordings.layout import (
    CHAIN,
    HEADER,
    MANIFEST,
    decode_data,
    first_link,
    next_link,
)
from appliance.audit.recordings.verify import chunk_files, read_events, verify_recording
from appliance.breakglass.recording.interface import RecordingError, SessionInfo
from appliance.breakglass.recording.recorder import RecorderLimits, Sink, open_sink
from tests.unit.recording_sample import INFO, Clock, sealed_session, start


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


class FullDisk:
    """An opener whose files share ``budget`` bytes; then writes fail with ENOSPC."""

    def __init__(self, budget: int, *, fail_sync: bool = False) -> None:
        self.budget = budget
        self.fail_sync = fail_sync

    def __call__(self, path: Path) -> Sink:
        return _Limited(open_sink(path), self)


class _Limited:
    def __init__(self, inner: Sink, disk: FullDisk) -> None:
        self.inner, self.disk = inner, disk

    def write(self, data: bytes) -> None:
        if len(data) > self.disk.budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.disk.budget -= len(data)
        self.inner.write(data)

    def sync(self) -> None:
        if self.disk.fail_sync:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self.inner.sync()

    def removed(self) -> bool:
        return self.inner.removed()

    def close(self) -> None:
        self.inner.close()


def test_each_event_is_in_the_file_when_the_call_returns(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock)
    recording.channel_opened(2, "exec")
    clock.t += 1.25
    recording.exec_request(2, "uname -a")
    events = list(read_events(chunk_files(recording.folder)))
    assert events == [
        (0.0, 2, "open", {"type": "exec", "term": "", "width": 0, "height": 0}),
        (1.25, 2, "exec", {"command": "uname -a"}),
    ]
    assert not (recording.folder / CHAIN).read_bytes()  # not closed yet: not chained


def test_a_chunk_closes_at_its_size_and_each_is_chained(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock, limits=RecorderLimits(chunk_bytes=200))
    recording.channel_opened(0, "shell")
    for n in range(20):
        recording.output(0, f"{n:02d} ".encode() * 10)
    sealed = recording.end("closed")
    files = chunk_files(sealed.path)
    assert len(files) == sealed.chunks == 6  # 20 lines of 55 bytes, 4 a chunk, and the open
    for path in files[:-1]:  # each closed with the line that took it to 200 bytes
        assert 200 <= path.stat().st_size < 200 + 55
    link = first_link((sealed.path / HEADER).read_bytes())
    lines = (sealed.path / CHAIN).read_text().splitlines()
    for n, (path, line) in enumerate(zip(files, lines, strict=True), start=1):
        digest = hashlib.sha256(path.read_bytes()).digest()
        link = next_link(link, n, digest)
        assert line == f"{n} {digest.hex()} {link.hex()}"


def test_a_chunk_closes_at_its_age_and_tick_closes_an_idle_one(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock, limits=RecorderLimits(chunk_seconds=5))
    recording.channel_opened(0, "shell")
    clock.t += 5
    recording.output(0, b"x")  # 5 s after the chunk opened: closed with this event
    recording.tick()  # returns once what was closed is chained (its fsync is in a thread)
    assert len((recording.folder / CHAIN).read_text().splitlines()) == 1
    recording.output(0, b"y")
    clock.t += 4
    recording.tick()
    assert len((recording.folder / CHAIN).read_text().splitlines()) == 1
    clock.t += 1
    recording.tick()
    assert len((recording.folder / CHAIN).read_text().splitlines()) == 2


def test_any_bytes_survive(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock)
    recording.channel_opened(0, "shell")
    sent = [bytes(range(256)), "héllo ✓".encode(), "✓".encode()[:2], b"", b"\x1b[0m\x00"]
    for data in sent:
        recording.output(0, data)
    stored = [e[3] for e in read_events(chunk_files(recording.folder)) if e[2] == "output"]
    assert [decode_data(value) for value in stored] == sent
    assert stored[1] == "héllo ✓"  # readable when UTF-8
    assert isinstance(stored[0], dict)
    assert isinstance(stored[2], dict)  # half a character: base64


def test_folder_and_files_are_for_root_only(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    sealed = sealed_session(tmp_path, key)
    assert sealed.path == tmp_path / "window-7" / "s-1"
    assert stat.S_IMODE(sealed.path.stat().st_mode) == 0o700
    for path in sealed.path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert {p.name for p in sealed.path.iterdir()} >= {HEADER, CHAIN, MANIFEST}


def test_a_session_is_recorded_once(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    start(tmp_path, key, Clock())
    with pytest.raises(RecordingError, match="exists"):
        start(tmp_path, key, Clock())


@pytest.mark.parametrize("session_id", ["../x", ".hidden", "a/b", "", "x" * 129])
def test_a_session_id_that_is_not_a_folder_name_is_refused(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, session_id: str
) -> None:
    info = SessionInfo(7, session_id, "eve", "gpu1")
    with pytest.raises(RecordingError, match="cannot name a folder"):
        start(tmp_path, key, Clock(), info=info)
    assert not any(tmp_path.rglob("*.jsonl"))


def test_a_full_disk_fails_the_event_and_every_call_after_it(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    disk = FullDisk(budget=2000)
    recording = start(tmp_path, key, clock, limits=RecorderLimits(chunk_bytes=300), opener=disk)
    recording.channel_opened(0, "shell")
    written = 0
    with pytest.raises(RecordingError, match="No space left on device"):
        for n in range(100):
            clock.t += 0.1
            recording.output(0, b"%03d" % n * 20)
            written += 1
    assert 0 < written < 100
    calls = [
        lambda: recording.output(0, b"more"),
        lambda: recording.input(0, b"x"),
        lambda: recording.resize(0, 1, 1),
        lambda: recording.channel_closed(0),
        lambda: recording.forward_request("direct-tcpip", "db", 5432, allowed=False),
        lambda: recording.tick(),
        lambda: recording.end("closed"),
    ]
    disk.budget = 10**9  # room again: a failed recording stays failed all the same
    for call in calls:
        with pytest.raises(RecordingError, match="failed .No space left on device."):
            call()
    # What is on disk: no manifest, the chained chunks verify, the cut is reported.
    folder = recording.folder
    assert not (folder / MANIFEST).exists()
    report = verify_recording(folder, key.public_key(), allow_unsealed=True)
    assert not report.sealed
    outputs = [e for e in read_events(report.chunks) if e[2] == "output"]
    assert len(outputs) <= written
    assert "UNSEALED" in report.describe()


def test_an_fsync_error_fails_the_recording(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    disk = FullDisk(budget=10**9, fail_sync=True)
    recording = start(tmp_path, key, clock, limits=RecorderLimits(chunk_bytes=100), opener=disk)
    recording.channel_opened(0, "shell")
    recording.output(0, b"x" * 100)  # closes the chunk: its fsync fails in the thread
    with pytest.raises(RecordingError, match="Input/output error"):
        recording.tick()  # waits for the thread: the failure is raised here at the latest
    with pytest.raises(RecordingError):
        recording.output(0, b"y")
    assert not (recording.folder / CHAIN).read_bytes()  # never chained


def test_a_failed_fsync_in_the_thread_fails_the_next_event(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    disk = FullDisk(budget=10**9, fail_sync=True)
    recording = start(tmp_path, key, Clock(), limits=RecorderLimits(chunk_bytes=100), opener=disk)
    recording.channel_opened(0, "shell")
    recording.output(0, b"x" * 100)
    deadline = time.monotonic() + 5
    with pytest.raises(RecordingError, match="Input/output error"):
        while time.monotonic() < deadline:
            recording.output(0, b"y")
            time.sleep(0.01)


def test_a_removed_folder_fails_the_recording_at_the_next_chunk(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock, limits=RecorderLimits(chunk_bytes=100))
    recording.channel_opened(0, "shell")
    shutil.rmtree(recording.folder)
    with pytest.raises(RecordingError, match="removed"):
        recording.output(0, b"x" * 100)
    with pytest.raises(RecordingError):
        recording.end("closed")
    assert not recording.folder.exists()


def test_a_removed_folder_is_not_sealed(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    recording = start(tmp_path, key, Clock())
    shutil.rmtree(recording.folder)
    with pytest.raises(RecordingError):
        recording.end("closed")


def test_a_sealed_recording_takes_no_more_events(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    recording = start(tmp_path, key, Clock())
    recording.channel_opened(0, "shell")
    sealed = recording.end("closed")
    assert sealed.chunks == 1
    with pytest.raises(RecordingError, match="sealed"):
        recording.output(0, b"late")
    with pytest.raises(RecordingError, match="sealed"):
        recording.end("again")
    assert INFO.session_id in str(sealed.path)
