"""A shell channel as asciicast v2, the format asciinema and most terminal players read.

One JSON header line (version, width, height, start timestamp, TERM, title), then one
event a line: ``[t, "o", text]`` for output, ``[t, "i", text]`` for input whose text was
kept (echoed; never a password typed with echo off), ``[t, "r", "WxH"]`` for a resize.
``t`` counts from the channel's opening. Output bytes are decoded as UTF-8 across event
boundaries (a character split between two writes is whole again), with U+FFFD for bytes
that are not UTF-8: playback is for people; the recording keeps the exact bytes.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from appliance.audit.recordings.layout import decode_data
from appliance.audit.recordings.verify import Event
from appliance.errors import ApplianceError

__all__ = ["CastEvent", "PlaybackError", "pick_channel", "read_asciicast", "to_asciicast"]

#: (t, "o" | "i" | "r", text)
CastEvent = tuple[float, str, str]


class PlaybackError(ApplianceError):
    """The recording or cast cannot be played as asked (no such channel, not a cast)."""


def pick_channel(events: Iterable[Event], channel: int | None) -> int:
    """``channel`` if the recording opened it, else its first shell channel."""
    opened: dict[int, str] = {}
    for _t, number, kind, data in events:
        if kind == "open" and isinstance(number, int) and isinstance(data, dict):
            opened.setdefault(number, str(data.get("type")))
    if channel is not None:
        if channel not in opened:
            raise PlaybackError(
                f"the recording has no channel {channel}; it has {_listed(opened)}",
                hint="pick one with --channel",
            )
        return channel
    for number, kind in opened.items():
        if kind == "shell":
            return number
    raise PlaybackError(
        f"the recording has no shell channel; it has {_listed(opened)}",
        hint="pick one with --channel",
    )


def to_asciicast(
    events: Iterable[Event], channel: int, *, started_at: datetime | None = None, title: str = ""
) -> Iterator[str]:
    """The asciicast v2 lines (without newlines) of ``channel``'s events."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    typed_at: dict[int, float] = {}
    start: float | None = None
    header: dict[str, Any] = {"version": 2, "width": 80, "height": 24}
    out: list[CastEvent] = []
    for t, number, kind, data in events:
        if number != channel:
            continue
        if kind == "open":
            start = t
            header["width"] = int(data.get("width") or 80)
            header["height"] = int(data.get("height") or 24)
            if data.get("term"):
                header["env"] = {"TERM": str(data["term"])}
            continue
        at = round(t - (start or 0.0), 6)
        if kind == "output":
            text = decoder.decode(decode_data(data))
            if text:
                out.append((at, "o", text))
        elif kind == "input":
            typed_at[int(data["n"])] = at
        elif kind == "typed":
            text = decode_data(data["data"]).decode("utf-8", errors="replace")
            out.append((typed_at.get(int(data["n"]), at), "i", text))
        elif kind == "resize":
            out.append((at, "r", f"{int(data['width'])}x{int(data['height'])}"))
    rest = decoder.decode(b"", final=True)
    if rest:
        out.append((out[-1][0] if out else 0.0, "o", rest))
    if started_at is not None:
        header["timestamp"] = int(started_at.timestamp())
    if title:
        header["title"] = title
    yield json.dumps(header, ensure_ascii=False)
    for event in sorted(out, key=lambda e: e[0]):  # stable: typed input before its echo
        yield json.dumps(list(event), ensure_ascii=False)


def read_asciicast(lines: Iterable[str]) -> tuple[dict[str, Any], list[CastEvent]]:
    """The header and events of an asciicast v2 file; PlaybackError if it is not one."""
    iterator = iter(lines)
    try:
        header = json.loads(next(iterator))
    except (StopIteration, ValueError) as exc:
        raise PlaybackError("not an asciicast v2 file: no JSON header line") from exc
    if not isinstance(header, dict) or header.get("version") != 2:
        raise PlaybackError("not an asciicast v2 file: expected a header with version 2")
    events: list[CastEvent] = []
    for number, line in enumerate(iterator, start=2):
        if not line.strip():
            continue
        try:
            t, code, data = json.loads(line)
            events.append((float(t), str(code), str(data)))
        except (ValueError, TypeError) as exc:
            raise PlaybackError(f"line {number} is not an event [t, code, data]") from exc
    return header, events


def _listed(opened: dict[int, str]) -> str:
    if not opened:
        return "no channels"
    return ", ".join(f"{n} ({kind})" for n, kind in sorted(opened.items()))
