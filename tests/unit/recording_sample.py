"""A vendor's shell session recorded with a controllable clock, for the recording tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from appliance.breakglass.recording.interface import SealedRecording, SessionInfo
from appliance.breakglass.recording.recorder import (
    FileRecording,
    RecorderLimits,
    Sink,
    open_sink,
    start_recording,
)

INFO = SessionInfo(window_id=7, session_id="s-1", engineer="eve", host="gpu1")


class Clock:
    """Monotonic and wall clocks that move only when told."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return datetime(2026, 11, 28, 10, 0, tzinfo=UTC) + timedelta(seconds=self.t - 100.0)


def start(
    root: Path,
    key: ec.EllipticCurvePrivateKey,
    clock: Clock,
    *,
    limits: RecorderLimits | None = None,
    opener: object = open_sink,
    info: SessionInfo = INFO,
) -> FileRecording:
    """A recorder for ``info`` under ``root`` on ``clock``."""
    return start_recording(
        root,
        info,
        key,
        limits=limits,
        monotonic=clock,
        wall=clock.wall,
        opener=opener,  # type: ignore[arg-type]
    )


def shell_session(recording: FileRecording, clock: Clock, *, chunks: int = 3) -> None:
    """A shell channel: ``ls`` typed and echoed, a sudo password not echoed, output in
    ``chunks`` parts (with RecorderLimits(chunk_seconds=1) each part is its own chunk)."""
    recording.channel_opened(0, "shell", term="xterm-256color", width=120, height=40)
    for key in (b"l", b"s", b"\r"):
        clock.t += 0.2
        recording.input(0, key)
        clock.t += 0.01
        recording.output(0, key + (b"\n" if key == b"\r" else b""))
    for part in range(chunks):
        clock.t += 1.5
        recording.output(0, f"line {part}\r\n".encode())
    clock.t += 0.5
    recording.input(0, b"sudo -i\r")
    clock.t += 0.01
    recording.output(0, b"sudo -i\r\n[sudo] password for vendor: ")
    for key in b"hunter2\r":
        clock.t += 0.1
        recording.input(0, bytes([key]))
    clock.t += 0.05
    recording.output(0, b"\r\n# ")
    recording.resize(0, 100, 30)
    recording.exit_status(0, 0)
    recording.channel_closed(0)


def sealed_session(
    root: Path, key: ec.EllipticCurvePrivateKey, *, chunks: int = 3
) -> SealedRecording:
    """A sealed recording of :func:`shell_session`, one chunk a second."""
    clock = Clock()
    recording = start(root, key, clock, limits=RecorderLimits(chunk_seconds=1.0))
    shell_session(recording, clock, chunks=chunks)
    return recording.end("vendor logged out")


__all__ = ["INFO", "Clock", "Sink", "sealed_session", "shell_session", "start"]
