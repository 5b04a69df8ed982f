"""asciicast v2 export and the `appliance breakglass` commands on a sample recording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.recordings.layout import MANIFEST
from appliance.audit.recordings.verify import chunk_files, read_events, verify_recording
from appliance.audit.signing_key import public_key_pem
from appliance.breakglass.recording.asciicast import (
    PlaybackError,
    pick_channel,
    read_asciicast,
    to_asciicast,
)
from appliance.breakglass.recording.playback import load_cast, play
from tests.unit.appliance_cli import cli as appliance
from tests.unit.recording_sample import Clock, sealed_session, start


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def folder(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    return sealed_session(tmp_path / "recordings", key).path


@pytest.fixture
def pem(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path = tmp_path / "audit-public-key.pem"
    path.write_bytes(public_key_pem(key))
    return path


def test_a_shell_channel_exports_as_asciicast_v2_and_reads_back(
    folder: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    report = verify_recording(folder, key.public_key())
    events = list(read_events(report.chunks))
    lines = list(to_asciicast(events, pick_channel(events, None), title="w7"))
    header, cast = read_asciicast(lines)
    assert header == {
        "version": 2,
        "width": 120,
        "height": 40,
        "env": {"TERM": "xterm-256color"},
        "title": "w7",
    }
    output = "".join(text for _t, code, text in cast if code == "o")
    assert output == (
        "ls\r\nline 0\r\nline 1\r\nline 2\r\nsudo -i\r\n[sudo] password for vendor: \r\n# "
    )
    typed = [(t, text) for t, code, text in cast if code == "i"]
    assert [text for _t, text in typed] == ["l", "s", "\r", "sudo -i\r", "\r"]  # no password
    assert typed[0][0] == 0.2  # when typed, not when echoed
    assert ("r", "100x30") in [(code, text) for _t, code, text in cast]
    times = [t for t, _code, _text in cast]
    assert times == sorted(times)


def test_a_character_split_between_writes_plays_whole(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    recording = start(tmp_path, key, Clock())
    recording.channel_opened(0, "shell")
    check = "✓".encode()
    recording.output(0, check[:1])
    recording.output(0, check[1:] + b" \xff")
    events = list(read_events(chunk_files(recording.folder)))
    _header, cast = read_asciicast(to_asciicast(events, 0))
    assert "".join(text for _t, _c, text in cast) == "✓ \ufffd"


def test_a_recording_without_a_shell_names_its_channels(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    recording = start(tmp_path, key, Clock())
    recording.channel_opened(0, "exec")
    events = list(read_events(chunk_files(recording.folder)))
    with pytest.raises(PlaybackError, match=r"no shell channel; it has 0 \(exec\)"):
        pick_channel(events, None)
    with pytest.raises(PlaybackError, match="no channel 4"):
        pick_channel(events, 4)
    assert pick_channel(events, 0) == 0


def test_play_keeps_the_timing_by_speed_and_cuts_long_pauses(
    folder: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    cast = load_cast(folder, key=key.public_key())
    written: list[str] = []
    pauses: list[float] = []
    slept = play(cast.events, write=written.append, sleep=pauses.append, speed=2.0, max_idle=0.5)
    assert "".join(written).endswith("# ")
    assert max(pauses) == 0.5  # 1.5 s between lines, halved, cut to 0.5
    assert slept == pytest.approx(sum(pauses))
    with pytest.raises(PlaybackError, match="above 0"):
        play(cast.events, write=written.append, sleep=pauses.append, speed=0)


def test_cli_play_verifies_and_replays(folder: Path, pem: Path) -> None:
    result = appliance("breakglass", "play", str(folder), "--verify-key", str(pem), "--no-wait")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("[sudo] password for vendor: \n# ")  # text=True: CR LF read as LF
    assert "hunter2" not in result.stdout
    assert result.stderr.startswith("OK: sealed recording of window 7")


def test_cli_play_refuses_an_altered_recording(folder: Path, pem: Path) -> None:
    manifest = folder / MANIFEST
    manifest.write_text(manifest.read_text().replace("eve", "bob"))
    result = appliance("breakglass", "play", str(folder), "--verify-key", str(pem), "--no-wait")
    assert result.returncode == 1
    assert result.stdout == ""  # nothing played
    assert "manifest.json: the signature does not verify" in result.stderr
    assert "what to do:" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_verify_recording_and_export_cast(folder: Path, pem: Path, tmp_path: Path) -> None:
    result = appliance("breakglass", "verify-recording", str(folder), "--key", str(pem))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: sealed recording of window 7, session s-1")
    wrong = appliance(
        "breakglass", "verify-recording", str(folder), "--key", str(pem), "--window", "8"
    )
    assert wrong.returncode == 1
    assert "expected a recording of window 8" in wrong.stderr
    out = tmp_path / "session.cast"
    made = appliance("breakglass", "export-cast", str(folder), "--key", str(pem), "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert json.loads(out.read_text().splitlines()[0])["version"] == 2
    played = appliance("breakglass", "play", str(out), "--no-wait")
    assert played.returncode == 0, played.stderr
    assert played.stdout.endswith("# ")
    signed = appliance("breakglass", "play", str(out), "--verify-key", str(pem))
    assert signed.returncode == 1
    assert "carries no signature" in signed.stderr


def test_cli_plays_an_unverified_folder_saying_so(folder: Path) -> None:
    result = appliance("breakglass", "play", str(folder), "--no-wait")
    assert result.returncode == 0
    assert result.stderr.startswith("NOT VERIFIED")


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (b"garbage\n", "line 1 is not an event"),
        (b"[1, 2]\n", "line 1 is not an event"),
        (
            b'[0.1, 1, "open", {"type": "shell"}]\n[0.2, 1, "output", {"b64": "!!"}]\n',
            "holds an event that cannot be played",
        ),
    ],
)
def test_an_unverified_folder_with_malformed_events_gets_an_error_not_a_traceback(
    folder: Path, line: bytes, said: str
) -> None:
    for chunk in chunk_files(folder):
        chunk.unlink()
    (folder / "chunk-000001.jsonl").write_bytes(line)
    result = appliance("breakglass", "play", str(folder), "--no-wait")
    assert result.returncode == 1
    assert said in result.stderr and "what to do:" in result.stderr
    assert "Traceback" not in result.stderr


def test_play_lists_the_files_that_moved_with_their_sha256(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, pem: Path
) -> None:
    recording = start(tmp_path / "recordings", key, Clock())
    recording.channel_opened(1, "sftp")
    recording.transfer(1, "open", {"handle": 1, "path": "up.bin", "flags": ["write"]})
    recording.transfer(1, "write", {"handle": 1, "offset": 0, "len": 5})
    whole = {"bytes": 5, "sha256": "ab" * 32, "in_order": True, "ranges": [[0, 5]]}
    recording.transfer(1, "close", {"handle": 1, "path": "up.bin", "upload": whole})
    partial = {"bytes": 4, "sha256": "cd" * 32, "in_order": False, "ranges": [[0, 2], [8, 10]]}
    recording.transfer(1, "close", {"handle": 2, "path": {"b64": "/w=="}, "download": partial})
    recording.transfer(1, "rename", {"path": "up.bin", "to": "x.bin"})
    recording.transfer(1, "error", {"request": "open", "code": 3, "reason": "Permission denied"})
    recording.channel_closed(1)
    folder = recording.end("the vendor disconnected").path
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["channels"]["1"]["upload_bytes"] == 5
    assert manifest["channels"]["1"]["transfers"] == 2
    result = appliance("breakglass", "play", str(folder), "--verify-key", str(pem), "--no-wait")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[1] == "file transfers (4):"
    assert lines[2].endswith(
        f"channel 1 (sftp)  upload up.bin  5 bytes  sha256 {'ab' * 32}  (in order from offset 0)"
    )
    assert "download \\xff" in lines[3] and "offsets 0-2, 8-10" in lines[3]
    assert lines[4].endswith("rename up.bin -> x.bin")
    assert lines[5].endswith("open refused by the target: Permission denied")
    assert result.stdout == ""
