"""Typed input is text only when the target echoed it (ADR 0021); passwords stay lengths."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.recordings.layout import decode_data
from appliance.audit.recordings.verify import chunk_files, read_events
from appliance.breakglass.recording.echo import EchoMatcher
from tests.unit.recording_sample import Clock, sealed_session, start


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def test_keystrokes_echoed_one_by_one_are_kept() -> None:
    echo = EchoMatcher()
    echo.typed(1, b"l")
    assert echo.output(b"l") == [(1, b"l")]
    echo.typed(2, b"s")
    echo.typed(3, b"\r")
    assert echo.output(b"s\r\n") == [(2, b"s"), (3, b"\r")]  # CR echoes as CR LF
    assert echo.waiting() == []


def test_a_password_typed_with_echo_off_stays_length_only() -> None:
    echo = EchoMatcher()
    for n, byte in enumerate(b"hunter2\r", start=1):
        echo.typed(n, bytes([byte]))
    # sudo prints its newline after reading the password: only the Enter matches
    assert echo.output(b"\r\n") == [(8, b"\r")]
    assert echo.waiting() == []


def test_a_pasted_password_is_not_kept_even_in_part() -> None:
    echo = EchoMatcher()
    echo.typed(1, b"hunter2\r")
    assert echo.output(b"\r\n# ") == []
    assert echo.waiting() == []


def test_an_echo_across_several_outputs_completes_the_input() -> None:
    echo = EchoMatcher()
    echo.typed(1, b"uptime\r")
    assert echo.output(b"upt") == []
    assert echo.waiting() == [1]
    assert echo.output(b"ime\r\n 10:00 up") == [(1, b"uptime\r")]


def test_an_input_half_echoed_then_not_is_dropped_and_the_next_is_compared_there() -> None:
    echo = EchoMatcher()
    echo.typed(1, b"ab")
    echo.typed(2, b"x")
    assert echo.output(b"a") == []
    assert echo.output(b"x") == [(2, b"x")]  # 1 not echoed ("b" never came): length-only


def test_mixed_command_password_command() -> None:
    echo = EchoMatcher()
    echo.typed(1, b"sudo id\r")
    assert echo.output(b"sudo id\r\n[sudo] password for v: ") == [(1, b"sudo id\r")]
    echo.typed(2, b"s3cret")
    echo.typed(3, b"\r")
    assert echo.output(b"\r\nuid=0(root)\r\n# ") == [(3, b"\r")]
    echo.typed(4, b"exit\r")
    assert echo.output(b"exit\r\n") == [(4, b"exit\r")]


def test_output_with_nothing_waiting_is_only_output() -> None:
    echo = EchoMatcher()
    assert echo.output(b"hello") == []
    echo.typed(1, b"h")
    assert echo.output(b"h") == [(1, b"h")]  # compared from the first output after typing


def test_the_waiting_queue_is_bounded() -> None:
    echo = EchoMatcher(max_pending=4)
    echo.typed(1, b"abc")
    echo.typed(2, b"de")  # 5 bytes waiting: the oldest input leaves, length-only
    assert echo.waiting() == [2]
    assert echo.output(b"abcde") == []  # "abc" is no longer waited for; "a" is not "d"


def test_the_recording_holds_the_echoed_text_and_only_lengths_of_the_password(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    sealed = sealed_session(tmp_path, key)
    events = list(read_events(chunk_files(sealed.path)))
    lengths = {e[3]["n"]: e[3]["len"] for e in events if e[2] == "input"}
    typed = {e[3]["n"]: decode_data(e[3]["data"]) for e in events if e[2] == "typed"}
    assert typed == {1: b"l", 2: b"s", 3: b"\r", 4: b"sudo -i\r", 12: b"\r"}
    assert [lengths[n] for n in range(5, 12)] == [1] * 7  # h u n t e r 2: lengths only
    raw = b"".join(path.read_bytes() for path in sealed.path.iterdir() if path.is_file())
    assert b"hunter2" not in raw
    assert b"hunter" not in raw.replace(b"\\", b"")


def test_each_input_is_written_before_its_echo_is_known(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock)
    recording.channel_opened(0, "shell")
    recording.input(0, b"ls\r")
    lines = chunk_files(recording.folder)[0].read_bytes().splitlines()
    assert lines[-1] == b'[0.0,0,"input",{"n":1,"len":3}]'
    recording.output(0, b"ls\r\n")
    lines = chunk_files(recording.folder)[0].read_bytes().splitlines()
    assert lines[-2:] == [b'[0.0,0,"output","ls\\r\\n"]', b'[0.0,0,"typed",{"n":1,"data":"ls\\r"}]']


def test_input_on_one_channel_is_not_echoed_by_another(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    clock = Clock()
    recording = start(tmp_path, key, clock)
    recording.channel_opened(0, "shell")
    recording.channel_opened(1, "shell")
    recording.input(0, b"pw")
    recording.output(1, b"pw")
    recording.channel_closed(0)  # still waiting at close: never text
    recording.output(1, b"pw")
    kinds = [e[2] for e in read_events(chunk_files(recording.folder))]
    assert "typed" not in kinds
