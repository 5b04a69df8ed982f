"""An audit export as a download: the same archive for the API and the auditor's page."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from appliance.admin.settings import AdminSettings
from appliance.audit.export import export_log
from appliance.audit.signing_key import load_key

__all__ = ["export_archive"]


def export_archive(
    db: Session,
    settings: AdminSettings,
    *,
    since: datetime,
    until: datetime,
    types: list[str] | None,
    fmt: Literal["jsonl", "csv"],
    actor: str,
    client: str,
    targets: list[str] | None = None,
    name: str | None = None,
    attachments: Mapping[str, Path | bytes] | None = None,
) -> tuple[str, bytes]:
    """The export's file name and bytes (the export is recorded in the log)."""
    name = name or f"audit-{since:%Y%m%d}-{until:%Y%m%d}.tar"
    with tempfile.TemporaryDirectory(prefix="audit-export-") as tmp:
        result = export_log(
            db,
            load_key(settings.data_dir),  # the service made it at start
            since=since,
            until=until,
            types=types,
            fmt=fmt,
            out=Path(tmp) / name,
            actor=actor,
            client=client,
            targets=targets,
            attachments=attachments,
        )
        return name, result.path.read_bytes()
