"""``appliance audit``: export the log for auditors, verify an export, check the live log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console

__all__ = ["app"]

app = typer.Typer(
    help="Export, verify and check the tamper-evident audit log.", no_args_is_help=True
)
_console = Console(highlight=False, soft_wrap=True)
_DB = typer.Option(None, "--db", help="SQLAlchemy URL [default: SQLite under the data dir].")
_CONFIG = typer.Option(None, "--config", help="The admin service's YAML settings file.")


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
) -> None:
    """Write an export that verifies offline (records, signed checkpoint, proofs, key)."""
    from appliance.admin.settings import load_settings
    from appliance.audit.checkpoint import load_or_create_key
    from appliance.audit.export import export_log
    from appliance.db.engine import open_session

    if fmt not in ("jsonl", "csv"):
        raise typer.BadParameter("--format is jsonl or csv")
    settings = load_settings(config, db_url=db)
    with open_session(settings.database_url) as session:
        result = export_log(
            session,
            load_or_create_key(settings.data_dir),
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
    """Verify an export offline; names the first bad record."""
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


@app.command("check")
def check(db: str | None = _DB, config: Path | None = _CONFIG) -> None:
    """Verify the live log in the database; names the first bad record."""
    from appliance.admin.settings import load_settings
    from appliance.audit.check import check_log
    from appliance.audit.checkpoint import load_or_create_key
    from appliance.db.engine import open_session

    settings = load_settings(config, db_url=db)
    with open_session(settings.database_url) as session:
        result = check_log(session, load_or_create_key(settings.data_dir).public_key())
    _console.print(f"OK: {result.records} records and {result.checkpoints} checkpoints verify")


def _fmt(value: str) -> Literal["jsonl", "csv"]:
    return "csv" if value == "csv" else "jsonl"
