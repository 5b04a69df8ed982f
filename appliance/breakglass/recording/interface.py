"""What the vendor shell proxy tells a recording, and what it gets back (ADR 0021).

The proxy calls a :class:`SessionRecording` for every event of an SSH session *before*
it forwards the bytes the event describes. Each call either returns once the event is
written, or raises :class:`RecordingError`, and the proxy then ends the session at once:
no byte that is not recorded reaches the target or the vendor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from appliance.breakglass.errors import BreakglassError

__all__ = ["RecordingError", "SealedRecording", "SessionInfo", "SessionRecording"]

ChannelKind = Literal["shell", "exec", "sftp", "scp", "forward"]


class RecordingError(BreakglassError):
    """The recording cannot be written: the session it records must end now."""

    http_status = 503


@dataclass(frozen=True)
class SessionInfo:
    """Whose session a recording holds: the window, the engineer, the target host."""

    window_id: int
    session_id: str
    engineer: str
    host: str


@dataclass(frozen=True)
class SealedRecording:
    """A recording once sealed: its folder, its signed manifest's sha256, and why it ended."""

    path: Path
    manifest_sha256: str
    chunks: int
    end_reason: str


class SessionRecording(Protocol):
    """One SSH session's recording; channels are numbered by the proxy."""

    def channel_opened(
        self, channel: int, kind: ChannelKind, *, term: str = "", width: int = 0, height: int = 0
    ) -> None: ...
    def output(self, channel: int, data: bytes) -> None: ...
    def input(self, channel: int, data: bytes) -> None: ...
    def resize(self, channel: int, width: int, height: int) -> None: ...
    def exec_request(self, channel: int, command: str) -> None: ...
    def exit_status(self, channel: int, status: int) -> None: ...
    def transfer(self, channel: int, op: str, details: Mapping[str, Any]) -> None:
        """One file operation of an SFTP or scp channel (layout: ``transfer`` events)."""
        ...

    def forward_request(self, kind: str, host: str, port: int, *, allowed: bool) -> None: ...
    def channel_closed(self, channel: int) -> None: ...
    def tick(self) -> None:
        """Close and chain a chunk that has been open long enough (called about each
        second), so a quiet session's last events are chained too."""
        ...

    def end(self, reason: str) -> SealedRecording: ...
