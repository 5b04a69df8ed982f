"""SFTP and scp through the vendor shell proxy (issue 26): relayed to the target, every
file recorded by name, size and sha256 before its bytes move on; asyncssh on loopback at
both ends."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from sqlalchemy.orm import Session, sessionmaker

from appliance.audit.recordings.errors import ChunkAlteredError
from appliance.audit.recordings.verify import read_events, verify_recording
from appliance.audit.signing_key import load_or_create_key
from appliance.breakglass.shell.serve import recordings_for
from appliance.breakglass.shell.sftp import MovedBytes, RecordedSftp, is_disguised_scp
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from tests.unit.shell_fixtures import add_window, close_all, make_bench, run


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    return sessionmaker(engine, expire_on_commit=False)


def transfers(timeline: list[tuple[Any, ...]]) -> list[tuple[str, dict[str, Any]]]:
    return [(e[3], e[4]) for e in timeline if e[:2] == ("rec", "transfer")]


def closes(timeline: list[tuple[Any, ...]], path: str) -> list[dict[str, Any]]:
    return [d for op, d in transfers(timeline) if op == "close" and d["path"] == path]


def test_an_sftp_upload_and_download_are_relayed_and_recorded_by_name_size_and_sha256(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    add_window(sessions)
    upload = os.urandom(700_000)
    download = os.urandom(300_001)
    local = tmp_path / "local"
    local.mkdir()
    (local / "up.bin").write_bytes(upload)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions)
        (bench.files / "down.bin").write_bytes(download)
        try:
            async with await bench.vendor() as vendor, vendor.start_sftp_client() as sftp:
                await sftp.put(str(local / "up.bin"), "up.bin")
                await sftp.get("down.bin", str(local / "down.bin"))
                await sftp.rename("up.bin", "moved.bin")
                await sftp.mkdir("dir")
                assert "moved.bin" in await sftp.listdir(".")
        finally:
            await close_all(things)
        assert (bench.files / "moved.bin").read_bytes() == upload
        assert (local / "down.bin").read_bytes() == download
        timeline = bench.timeline
        (up,) = closes(timeline, "up.bin")
        assert up["upload"] == {
            "bytes": len(upload),
            "sha256": hashlib.sha256(upload).hexdigest(),
            "in_order": True,
            "ranges": [[0, len(upload)]],
        }
        assert "download" not in up
        (down,) = closes(timeline, "down.bin")
        assert down["download"]["sha256"] == hashlib.sha256(download).hexdigest()
        assert down["download"]["ranges"] == [[0, len(download)]]
        ops = transfers(timeline)
        assert ("rename", {"path": "up.bin", "to": "moved.bin"}) in ops
        assert any(op == "mkdir" and d["path"] == "dir" for op, d in ops)
        assert any(op == "listed" and "moved.bin" in d["names"] for op, d in ops)
        # Every write is recorded before the target receives it.
        recorded = [i for i, e in enumerate(timeline) if e[:4] == ("rec", "transfer", 1, "write")]
        received = [i for i, e in enumerate(timeline) if e[:2] == ("target", "write")]
        assert recorded and received and recorded[0] < received[0]
        assert sum(timeline[i][4]["len"] for i in recorded) == len(upload)
        assert sum(timeline[i][3] for i in received) == len(upload)
        opened = [e for e in timeline if e[:3] == ("rec", "open", 1)]
        assert opened == [("rec", "open", 1, "sftp", "", 0, 0)]

    run(main())


def test_legacy_scp_is_relayed_as_file_operations_and_recorded(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    """``scp -O`` (asyncssh's scp client speaks only the legacy protocol)."""
    add_window(sessions)
    data = os.urandom(200_000)
    (tmp_path / "send.bin").write_bytes(data)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions)
        try:
            async with await bench.vendor() as vendor:
                await asyncssh.scp(str(tmp_path / "send.bin"), (vendor, "sent.bin"))
                await asyncssh.scp((vendor, "sent.bin"), str(tmp_path / "back.bin"))
        finally:
            await close_all(things)
        assert (bench.files / "sent.bin").read_bytes() == data
        assert (tmp_path / "back.bin").read_bytes() == data
        digest = hashlib.sha256(data).hexdigest()
        sent = closes(bench.timeline, "sent.bin")
        assert [c.get("upload", {}).get("sha256") for c in sent] == [digest, None]
        assert sent[1]["download"]["sha256"] == digest
        events = [e[1:] for e in bench.timeline if e[0] == "rec"]
        assert ("open", 1, "scp", "", 0, 0) in events
        assert any(e[:2] == ("exec", 1) and e[2].startswith("scp -t") for e in events)
        assert ("target", "start") not in {e[:2] for e in bench.timeline}  # no exec relayed

    run(main())


def test_a_failed_recording_during_an_upload_ends_the_session_and_nothing_more_is_written(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    add_window(sessions)
    writes: list[int] = []

    def disk_full(event: tuple[Any, ...]) -> bool:
        if event[0] == "transfer" and event[2] == "write":
            writes.append(event[3]["offset"])
            return len(writes) == 3
        return False

    (tmp_path / "big.bin").write_bytes(os.urandom(2_000_000))

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions, fail_on=disk_full)
        try:
            vendor = await bench.vendor()
            with pytest.raises((asyncssh.SFTPError, asyncssh.Error, OSError)):
                async with vendor.start_sftp_client() as sftp:
                    await sftp.put(str(tmp_path / "big.bin"), "big.bin", block_size=16384)
            await asyncio.wait_for(vendor.wait_closed(), 2.0)
            await asyncio.sleep(0.2)
        finally:
            await close_all(things)
        timeline = bench.timeline
        recorded = [e[4] for e in timeline if e[:4] == ("rec", "transfer", 1, "write")]
        received = [(e[2], e[3]) for e in timeline if e[:2] == ("target", "write")]
        assert len(recorded) == 2
        assert received == [(w["offset"], w["len"]) for w in recorded]
        assert (bench.files / "big.bin").stat().st_size <= 2 * 16384
        assert not closes(timeline, "big.bin")  # the close after the failure is not recorded
        (recording,) = bench.recordings
        assert recording.ended is not None and recording.ended.startswith("recording failed")
        assert bench.proxy.sessions == set()

    run(main())


def test_a_disguised_legacy_scp_command_is_refused(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    add_window(sessions)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions)
        try:
            async with await bench.vendor() as vendor:
                result = await vendor.run("/usr/bin/scp -t /tmp", encoding=None)
        finally:
            await close_all(things)
        assert result.exit_status == 1 and b"scp" in result.stderr
        assert ("target", "start") not in {e[:2] for e in bench.timeline}

    run(main())


@pytest.mark.parametrize(
    ("command", "disguised"),
    [("scp -t x", False), ("/usr/bin/scp -f x", True), ("ls /usr/bin/scp", False), ("", False)],
)
def test_which_commands_are_scp_by_another_path(command: str, disguised: bool) -> None:
    assert is_disguised_scp(command) is disguised


def test_the_recorded_sftp_server_touches_none_of_the_proxys_own_files() -> None:
    """Every method of asyncssh's SFTPServer that reads or writes local files is ours."""
    harmless = {"convert_attrs", "format_longname", "map_path", "reverse_map_path"}
    for name, member in inspect.getmembers(asyncssh.SFTPServer, inspect.isfunction):
        if name.startswith("_") or name in harmless:
            continue
        assert member is not getattr(RecordedSftp, name), f"SFTPServer.{name} is not overridden"


def test_moved_bytes_say_whether_they_moved_in_order_and_what_they_covered() -> None:
    moved = MovedBytes()
    moved.add(0, b"abc")
    moved.add(3, b"def")
    assert moved.summary()["in_order"] and moved.ranges == [[0, 6]]
    moved.add(10, b"xy")
    moved.add(6, b"gh")
    summary = moved.summary()
    assert summary["ranges"] == [[0, 8], [10, 12]] and not summary["in_order"]
    assert summary["sha256"] == hashlib.sha256(b"abcdefxygh").hexdigest()  # as they moved
    assert summary["bytes"] == 10


def test_a_recorded_transfer_verifies_and_a_one_byte_edit_does_not(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    sessions = sessionmaker(engine, class_=Session, expire_on_commit=False)
    window = add_window(sessions)
    key = load_or_create_key(tmp_path / "data")
    root = tmp_path / "recordings"
    root.mkdir(mode=0o700)
    data = os.urandom(1_000_000)
    (tmp_path / "up.bin").write_bytes(data)

    async def main() -> None:
        bench, things = await make_bench(tmp_path, sessions, recordings=recordings_for(root, key))
        try:
            async with await bench.vendor() as vendor, vendor.start_sftp_client() as sftp:
                await sftp.put(str(tmp_path / "up.bin"), "up.bin")
                await sftp.get("up.bin", str(tmp_path / "back.bin"))
        finally:
            await close_all(things)

    run(main())
    (folder,) = list((root / f"window-{window}").iterdir())
    report = verify_recording(folder, key.public_key(), window_id=window)
    moved = [
        d
        for _, _, kind, d in read_events(report.chunks)
        if kind == "transfer" and d["op"] == "close"
    ]
    digest = hashlib.sha256(data).hexdigest()
    assert [(d["path"], d["upload"]["sha256"], d["upload"]["bytes"]) for d in moved[:1]] == [
        ("up.bin", digest, len(data))
    ]
    assert moved[1]["download"]["sha256"] == digest
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["channels"]["1"]["upload_bytes"] == len(data)
    assert manifest["channels"]["1"]["download_bytes"] == len(data)
    chunk = report.chunks[0]
    text = chunk.read_bytes()
    at = text.index(digest.encode())
    chunk.write_bytes(text[:at] + (b"0" if text[at : at + 1] != b"0" else b"1") + text[at + 1 :])
    with pytest.raises(ChunkAlteredError):
        verify_recording(folder, key.public_key(), window_id=window)
