"""A window's recordings for its auditors: each verified against its audit record, its
shell channel as asciicast, and the window's timeline from the log and the recordings.

A recording is shown only once it verifies (sealed with the audit key, intact, of the
window, the manifest digest its record holds): one that does not is listed with the reason
and never played. Every look at a recording is itself recorded in the window's log
(``breakglass.recording-viewed``), so the window's evidence says who watched what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.settings import AdminSettings
from appliance.audit.recordings.carried import (
    RecordedSession,
    check_against_record,
    store_folder,
)
from appliance.audit.recordings.verify import RecordingReport, read_events
from appliance.audit.signing_key import load_key
from appliance.breakglass.errors import BreakglassNotFoundError
from appliance.breakglass.recording.asciicast import pick_channel, to_asciicast
from appliance.breakglass.recording.evidence import recorded_sessions
from appliance.breakglass.recording.playback import describe_transfer
from appliance.breakglass.records import record, target_of
from appliance.db.models import AuditEvent, BreakglassWindow, User
from appliance.errors import ApplianceError

__all__ = [
    "ShownRecording",
    "TimelineEntry",
    "cast_of",
    "record_viewing",
    "timeline",
    "window_recordings",
]

VIEWED = "recording-viewed"


@dataclass(frozen=True)
class ShownRecording:
    """A recorded session of the window, and whether it verified (``problem`` says why not)."""

    session: RecordedSession
    report: RecordingReport | None
    problem: str | None


@dataclass(frozen=True)
class TimelineEntry:
    """One moment of the window: from the audit log or from a recording's events."""

    at: datetime
    source: str  # "log" or the recording's session id
    kind: str
    text: str
    #: Seconds into the played cast, for entries of the recording being played.
    seek: float | None = None


def _public(settings: AdminSettings) -> ec.EllipticCurvePublicKey:
    return load_key(settings.data_dir).public_key()


def window_recordings(
    db: Session, settings: AdminSettings, window: BreakglassWindow
) -> list[ShownRecording]:
    """Every recording the log names for ``window``, each verified from the store."""
    public = _public(settings)
    shown = []
    for session in recorded_sessions(db, target_of(window)):
        folder = store_folder(settings.recordings_dir, session)
        try:
            report = check_against_record(folder, session, public, shown=session.member)
        except ApplianceError as exc:
            shown.append(ShownRecording(session, None, str(exc)))
        else:
            shown.append(ShownRecording(session, report, None))
    return shown


def find(recordings: list[ShownRecording], session_id: str) -> ShownRecording:
    """The window's recording of ``session_id``; BreakglassNotFoundError otherwise."""
    for shown in recordings:
        if shown.session.session_id == session_id:
            return shown
    raise BreakglassNotFoundError(f"the window has no recording of session {session_id!r}")


def cast_of(shown: ShownRecording) -> str:
    """The verified recording's first shell channel as asciicast v2 text."""
    if shown.report is None:
        raise BreakglassNotFoundError(
            f"the recording of session {shown.session.session_id} does not verify, so it is "
            f"not played: {shown.problem}"
        )
    report = shown.report
    events = list(read_events(report.chunks))
    channel = pick_channel(events, None)
    started = datetime.fromisoformat(report.started_at)
    title = f"window {report.window_id} · {report.engineer} on {report.host}"
    return "\n".join(to_asciicast(events, channel, started_at=started, title=title)) + "\n"


def record_viewing(
    db: Session,
    window: BreakglassWindow,
    auditor: User,
    client: str,
    sessions: list[str],
    what: str,
) -> None:
    """Record that ``auditor`` looked at ``sessions`` of ``window`` (``what``: the page, the
    cast) in the caller's transaction."""
    record(
        db,
        window,
        VIEWED,
        actor=auditor.username,
        client=client,
        details={"window_id": window.id, "sessions": sessions, "what": what},
    )


def timeline(
    db: Session, window: BreakglassWindow, recordings: list[ShownRecording], playing: str | None
) -> list[TimelineEntry]:
    """The window's moments in order: its audit records (request, approvals, activation,
    logins, circuits, end) and, from each verified recording, its session's start and end,
    channels, commands and file transfers. Entries of ``playing`` carry their seek time."""
    entries = [
        TimelineEntry(row.at, "log", row.action.removeprefix("breakglass."), _summary(row))
        for row in db.scalars(
            select(AuditEvent)
            .where(AuditEvent.target == target_of(window))
            .order_by(AuditEvent.seq)
        )
        if row.action != f"breakglass.{VIEWED}"
    ]
    for shown in recordings:
        if shown.report is not None:
            entries += _recording_entries(shown.report, shown.session.session_id == playing)
    return sorted(entries, key=lambda e: e.at)


def _summary(row: AuditEvent) -> str:
    details: dict[str, Any] = row.details or {}
    said = ", ".join(
        f"{k}: {v}"
        for k, v in details.items()
        if k in ("engineer", "service", "note", "reason", "session_id", "host", "end_reason")
        and v not in (None, "")
    )
    text = f"{row.actor}" + (f" — {said}" if said else "")
    return text if row.outcome == "ok" else f"{text} ({row.outcome})"


def _recording_entries(report: RecordingReport, playing: bool) -> list[TimelineEntry]:
    start = datetime.fromisoformat(report.started_at)
    who = f"{report.engineer} on {report.host}"
    entries = [TimelineEntry(start, report.session_id, "session start", who)]
    opened: dict[int, float] = {}
    shell: int | None = None
    for t, channel, kind, data in read_events(report.chunks):
        at = start + timedelta(seconds=t)
        seek = None
        if playing and isinstance(channel, int) and channel == shell:
            seek = max(0.0, t - opened[channel])
        if kind == "open" and isinstance(channel, int) and isinstance(data, dict):
            opened[channel] = t
            if shell is None and data.get("type") == "shell":
                shell, seek = channel, (0.0 if playing else None)
            text = f"channel {channel}: {data.get('type')}"
            entries.append(TimelineEntry(at, report.session_id, "open", text, seek))
        elif kind == "exec" and isinstance(data, dict):
            text = f"channel {channel}: {data.get('command')}"
            entries.append(TimelineEntry(at, report.session_id, "command", text, seek))
        elif kind == "transfer" and isinstance(data, dict):
            entries.extend(
                TimelineEntry(at, report.session_id, "file transfer", text, seek)
                for text in describe_transfer(data)
            )
        elif kind == "forward" and isinstance(data, dict):
            verdict = "allowed" if data.get("allowed") else "refused"
            text = f"{data.get('kind')} {data.get('host')}:{data.get('port')} {verdict}"
            entries.append(TimelineEntry(at, report.session_id, "forward", text, seek))
        elif kind == "exit" and isinstance(data, dict):
            text = f"channel {channel}: exit status {data.get('status')}"
            entries.append(TimelineEntry(at, report.session_id, "exit", text, seek))
        elif kind == "resize" and isinstance(data, dict):
            text = f"channel {channel}: {data.get('width')}x{data.get('height')}"
            entries.append(TimelineEntry(at, report.session_id, "resize", text, seek))
    if report.ended_at:
        entries.append(
            TimelineEntry(
                datetime.fromisoformat(report.ended_at),
                report.session_id,
                "session end",
                report.end_reason or "",
            )
        )
    return entries
