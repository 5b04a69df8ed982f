"""``appliance audit``: export the log for auditors, verify an export, check the live log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from appliance.admin.settings import AdminSettings

__all__ = ["app"]

app = typer.Typer(
    help="Export, verify and check the tamper-evident audit log.", no_args_is_help=True
)
_console = Console(highlight=False, soft_wrap=True)
_DB = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite under the data dir).")
_CONFIG = typer.Option(None, "--config", help="The admin service's YAML settings file.")
_DATA_DIR = typer.Option(
    None, "--data-dir", help="The admin service's data directory (holds its signing key)."
)
_POINT = (
    "point the audit tools at the admin service's: --config FILE (its settings file) or "
    "--data-dir DIR (its data directory)"
)


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("export")
def export(
    since: str = typer.Option(
        ..., "--since", help="ISO 8601, e.g. 2026-11-01 or 2026-11-01T00:00Z"
    ),
    until: str = typer.Option(..., "--until", help="ISO 8601"),
    out: Path = typer.Option(..., "--out", help="The archive to write (.tar)."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv"),
    types: list[str] = typer.Option(
        [], "--type", help="Only these actions or families (auth, identity.create, …); repeatable."
    ),
    db: str | None = _DB,
    config: Path | None = _CONFIG,
    data_dir: Path | None = _DATA_DIR,
) -> None:
    """Write an export that verifies offline (records, signed checkpoint, proofs, key).

    Signs with the admin service's key; never makes one.
    """
    from appliance.admin.settings import load_settings
    from appliance.audit.export import export_log
    from appliance.audit.signing_key import load_key

    if fmt not in ("jsonl", "csv"):
        raise typer.BadParameter("--format is jsonl or csv")
    settings = load_settings(config, db_url=db, data_dir=data_dir)
    with _service_log(settings) as session:
        result = export_log(
            session,
            load_key(settings.data_dir),
            since=_when(since),
            until=_when(until),
            types=types or None,
            fmt=_fmt(fmt),
            out=out,
            actor="cli",
        )
    _console.print(
        f"exported records {result.first}..{result.last} ({result.records} records, "
        f"{result.omitted} left out by type) to {result.path}; signed checkpoint of "
        f"{result.tree_size} records"
    )


@app.command("verify")
def verify(
    archive: Path = typer.Argument(..., help="An export made by `appliance audit export`."),
    key: Path | None = typer.Option(
        None, "--key", exists=True, dir_okay=False, help="The audit public key to trust."
    ),
    previous: Path | None = typer.Option(
        None, "--previous", exists=True, dir_okay=False, help="The export before it."
    ),
) -> None:
    """Verify an export offline; names the first bad record, and in a window's evidence
    the first recording that is missing, altered or not the one the log sealed."""
    from appliance.audit.verify import verify_export

    summary = verify_export(archive, key_pem=key.read_bytes() if key else None, previous=previous)
    link = (
        f"; continues the previous export of {summary.previous_tree_size} records"
        if summary.previous_tree_size
        else ""
    )
    _console.print(
        f"OK: records {summary.first}..{summary.last} are complete and unaltered "
        f"({summary.records} records, {summary.omitted} left out by type), in the "
        f"signed log of {summary.tree_size} records{link}"
    )
    for report in summary.recordings:
        _console.print(f"  recording {report.session_id}: {report.describe()}")
    if summary.evidence:
        _console.print(
            f"OK: the window's {len(summary.recordings)} session recording"
            f"{'' if len(summary.recordings) == 1 else 's'} named in the log are carried, "
            "sealed, intact and the ones the log recorded"
        )
    elif summary.recordings_not_carried:
        _console.print(
            f"note: the records name {summary.recordings_not_carried} session recording(s) "
            "this export does not carry (it is not a window's evidence export: get that "
            "from GET /api/v1/breakglass/windows/ID/evidence)"
        )


@app.command("check")
def check(
    db: str | None = _DB, config: Path | None = _CONFIG, data_dir: Path | None = _DATA_DIR
) -> None:
    """Verify the live log in the database; names the first bad record. Never makes a key."""
    from appliance.admin.settings import load_settings
    from appliance.audit.check import check_log
    from appliance.audit.signing_key import load_key

    settings = load_settings(config, db_url=db, data_dir=data_dir)
    with _service_log(settings) as session:
        result = check_log(session, load_key(settings.data_dir).public_key())
    records = f"{result.records} record{'' if result.records == 1 else 's'}"
    checkpoints = f"{result.checkpoints} checkpoint{'' if result.checkpoints == 1 else 's'}"
    _console.print(f"OK: {records} and {checkpoints} verify")


@app.command("init-key")
def init_key(config: Path | None = _CONFIG, data_dir: Path | None = _DATA_DIR) -> None:
    """Make the admin service's audit signing key unless it has one (the service makes it
    at its first start too); an existing key is never replaced."""
    from appliance.admin.settings import load_settings
    from appliance.audit.signing_key import KEY_FILE, create_key, key_id, load_key

    settings = load_settings(config, data_dir=data_dir)
    made = create_key(settings.data_dir)
    fingerprint = key_id(load_key(settings.data_dir))
    _console.print(
        f"{'made' if made else 'kept the existing'} audit signing key "
        f"{settings.data_dir / KEY_FILE} (id {fingerprint})"
    )


@app.command("append")
def append(db: str | None = _DB, config: Path | None = _CONFIG) -> None:
    """Append events read as JSON from stdin, as the installer reports its runs.

    stdin: a list of {"event_id", "actor", "action", "target", "outcome", "details"}. An
    event whose id the log already holds is skipped, so a sender may retry safely.
    """
    import json
    import sys

    from sqlalchemy import select

    from appliance.admin.settings import load_settings
    from appliance.audit.record import record_event
    from appliance.db.engine import open_session
    from appliance.db.models import AuditEvent

    try:
        events = json.loads(sys.stdin.read())
        if not isinstance(events, list) or not all(
            isinstance(e, dict) and isinstance(e.get("event_id"), str) and e.get("action")
            for e in events
        ):
            raise ValueError("expected a list of objects, each with event_id and action")
    except ValueError as exc:
        raise typer.BadParameter(f"stdin is not a list of events: {exc}") from None
    settings = load_settings(config, db_url=db)
    added = 0
    with open_session(settings.database_url) as session:
        for event in events:
            seen = session.scalars(
                select(AuditEvent.details).where(AuditEvent.action == str(event["action"]))
            )
            if any(d.get("event_id") == event["event_id"] for d in seen):
                continue
            record_event(
                session,
                actor=str(event.get("actor", "")),
                action=str(event["action"]),
                target=str(event.get("target", "")),
                outcome=str(event.get("outcome", "ok")),
                details={**dict(event.get("details") or {}), "event_id": event["event_id"]},
            )
            session.commit()  # each one durable before the next
            added += 1
    _console.print(f"appended {added} events ({len(events) - added} were already in the log)")


@app.command("carry")
def carry(
    from_db: str = typer.Option(
        ..., "--from-db", help="SQLAlchemy URL of the log a restore replaced."
    ),
    db: str | None = _DB,
    config: Path | None = _CONFIG,
) -> None:
    """After a rollback: copy the records made since the snapshot back into the live log."""
    from appliance.admin.settings import load_settings
    from appliance.audit.carry import carry_records
    from appliance.db.engine import open_session

    settings = load_settings(config, db_url=db)
    with open_session(settings.database_url) as target, open_session(from_db) as source:
        copied = carry_records(target, source)
    _console.print(f"carried {copied} records into the restored log")


@contextmanager
def _service_log(settings: AdminSettings) -> Iterator[Session]:
    """A session on the service's log, the database tried before the key (an unmigrated
    one says so); a missing or wrong key names its directory and how to point at the
    service's."""
    from appliance.audit.signing_key import KEY_FILE, AuditKeyMismatchError, AuditKeyMissingError
    from appliance.db.engine import open_session
    from appliance.db.models import AuditHead

    try:
        with open_session(settings.database_url) as session:
            session.get(AuditHead, 1)
            yield session
    except AuditKeyMissingError as exc:
        raise AuditKeyMissingError(
            f"{exc}; the audit tools never make one: {_POINT}", path=exc.path
        ) from None
    except AuditKeyMismatchError as exc:
        raise AuditKeyMismatchError(
            f"the audit signing key {settings.data_dir / KEY_FILE}: {exc}; {_POINT}"
        ) from None


def _fmt(value: str) -> Literal["jsonl", "csv"]:
    return "csv" if value == "csv" else "jsonl"
