"""Replay a cast's output in a terminal, with its timing.

Output events are written as they were received, the pauses between them divided by
``speed`` and cut to ``max_idle`` seconds (an engineer who left a shell open for an hour
should not cost the auditor an hour). Input and resize events are not replayed: the
output already shows what the terminal showed. Writer and sleep are injected for tests.

File transfers (SFTP and scp channels) are not played but listed, one line each
(:func:`describe_transfers`): each file that moved with its direction, size and sha256,
and each change the vendor made to the target's files (rename, remove, mkdir, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.recordings.layout import decode_data
from appliance.audit.recordings.verify import (
    Event,
    RecordingReport,
    chunk_files,
    read_events,
    verify_recording,
)
from appliance.breakglass.recording.asciicast import (
    CastEvent,
    PlaybackError,
    pick_channel,
    read_asciicast,
    to_asciicast,
)

__all__ = ["Cast", "describe_transfer", "describe_transfers", "load_cast", "play"]

#: Transfer operations listed by :func:`describe_transfers` besides each file's close
#: (the rest, reads, writes and stats, are in the recording for whoever needs them).
_CHANGES = ("remove", "rename", "mkdir", "rmdir", "setstat", "lsetstat", "symlink", "link")


@dataclass(frozen=True)
class Cast:
    """What to play: the asciicast header and events, and the verification behind them
    (None: played without a key, or from a .cast file, which carries no signature)."""

    header: dict[str, Any]
    events: list[CastEvent]
    report: RecordingReport | None
    transfers: tuple[str, ...] = ()


def load_cast(
    target: Path,
    *,
    key: ec.EllipticCurvePublicKey | None,
    channel: int | None = None,
    allow_unsealed: bool = False,
) -> Cast:
    """A recording's folder (verified first when ``key`` is given) or an asciicast file."""
    if not target.is_dir():
        if key is not None:
            raise PlaybackError(
                f"{target}: an asciicast file carries no signature to verify",
                hint="verify and play the recording's folder instead",
            )
        try:
            lines = target.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise PlaybackError(f"{target}: cannot be read: {exc.strerror}") from exc
        header, events = read_asciicast(lines)
        return Cast(header, events, None)
    report = (
        verify_recording(target, key, allow_unsealed=allow_unsealed) if key is not None else None
    )
    recorded = list(read_events(report.chunks if report else chunk_files(target)))
    try:
        transfers = tuple(describe_transfers(recorded))
    except (ValueError, KeyError, TypeError) as exc:  # only an unverified folder gets here
        raise PlaybackError(
            f"{target}: a transfer event cannot be read ({exc})",
            hint="verify the recording first (--verify-key): it may have been altered",
        ) from None
    try:
        number = pick_channel(recorded, channel)
    except PlaybackError:
        if channel is None and transfers:  # file transfers only: nothing to replay
            return Cast({"version": 2, "width": 80, "height": 24}, [], report, transfers)
        raise
    started = datetime.fromisoformat(report.started_at) if report and report.started_at else None
    try:
        lines = list(to_asciicast(recorded, number, started_at=started))
    except (ValueError, KeyError, TypeError) as exc:  # only an unverified folder gets here
        raise PlaybackError(
            f"{target}: channel {number} holds an event that cannot be played ({exc})",
            hint="verify the recording first (--verify-key): it may have been altered",
        ) from None
    header, events = read_asciicast(lines)
    return Cast(header, events, report, transfers)


def describe_transfers(events: Iterable[Event]) -> Iterator[str]:
    """One line per file that moved and per change to the target's files, in order."""
    kinds: dict[int, str] = {}
    for t, number, kind, data in events:
        if kind == "open" and isinstance(number, int):
            kinds[number] = str(data.get("type"))
        if kind != "transfer":
            continue
        where = f"{t:10.3f}s  channel {number} ({kinds.get(number or 0, '?')})"
        for line in describe_transfer(data):
            yield f"{where}  {line}"


def describe_transfer(data: dict[str, Any]) -> list[str]:
    """What one transfer event says a person should see: the files a close says moved
    (one line per direction), a change to the target's files, or the target's refusal;
    nothing for reads, writes and stats (they are in the recording for whoever needs them)."""
    op = str(data["op"])
    if op == "close":
        return [
            f"{direction} {_text(data['path'])}  {_moved(data[direction])}"
            for direction in ("upload", "download")
            if data.get(direction)
        ]
    if op in _CHANGES:
        to = f" -> {_text(data['to'])}" if "to" in data else ""
        attrs = f" {data['attrs']}" if data.get("attrs") else ""
        return [f"{op} {_text(data['path'])}{to}{attrs}"]
    if op == "error":
        return [f"{data['request']} refused by the target: {data['reason']}"]
    return []


def _text(path: Any) -> str:
    return decode_data(path).decode("utf-8", errors="backslashreplace")


def _moved(moved: dict[str, Any]) -> str:
    size = int(moved["bytes"])
    ranges = moved["ranges"]
    if moved["in_order"] and ranges == [[0, size]]:
        how = "in order from offset 0"
    else:
        covered = ", ".join(f"{a}-{b}" for a, b in ranges)
        how = f"out of order: sha256 of the bytes as they moved; offsets {covered}"
    return f"{size} bytes  sha256 {moved['sha256']}  ({how})"


def play(
    events: Iterable[CastEvent],
    *,
    write: Callable[[str], object],
    sleep: Callable[[float], object],
    speed: float = 1.0,
    max_idle: float | None = 3.0,
) -> float:
    """Write each output event after its pause; returns the seconds slept in all."""
    if speed <= 0:
        raise PlaybackError(f"--speed must be above 0, found {speed}")
    slept, previous = 0.0, 0.0
    for t, code, text in events:
        if code != "o":
            continue
        pause = max(0.0, t - previous) / speed
        if max_idle is not None:
            pause = min(pause, max_idle)
        if pause > 0:
            sleep(pause)
            slept += pause
        write(text)
        previous = t
    return slept
