"""Small audit logs and their exports, for the audit tests: made, exported, tampered with.

Real SQLite databases and the real `appliance audit` command.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from appliance.audit.checkpoint import load_or_create_key
from appliance.audit.export import export_log
from appliance.audit.record import record_event
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade

REPO = Path(__file__).resolve().parents[2]
EARLY, LATE = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def new_log(root: Path, records: int = 10) -> str:
    """A SQLite admin database under ``root`` with ``records`` audit records; its URL."""
    url = f"sqlite:///{root / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        for i in range(records):
            record_event(
                session,
                actor="alice",
                action="identity.create" if i % 2 else "auth.login",
                target=f"t{i}",
                details={"n": i, "note": "ünïcode"},
            )
            session.commit()
    return url


def audit_cli(
    *args: str, data_dir: Path | None = None, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``appliance audit ARGS`` as a user runs it, with the service's settings in ``env``."""
    settings = {"APPLIANCE_ADMIN_DATA_DIR": str(data_dir)} if data_dir else {}
    return subprocess.run(
        [sys.executable, "-m", "appliance", "audit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **settings, **env},
        check=False,
        timeout=60,
    )


def export(root: Path, url: str, name: str = "export.tar", **kwargs: object) -> Path:
    """Export the whole log at ``url`` to ``root/name``, signed with ``root``'s key."""
    out = root / name
    with Session(make_engine(url)) as session:
        export_log(
            session,
            load_or_create_key(root),
            since=EARLY,
            until=LATE,
            types=kwargs.get("types"),
            fmt=kwargs.get("fmt", "jsonl"),  # type: ignore[arg-type]
            out=out,
            actor="auditor1",
        )
    return out


def rewrite(archive: Path, name: str, change: object) -> None:
    """Replace one member of the archive with change(old bytes)."""
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    members[name] = change(members[name])  # type: ignore[operator]
    with tarfile.open(archive, "w") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def lines(data: bytes) -> list[dict[str, object]]:
    """The records of a JSON-lines member."""
    return [json.loads(line) for line in data.splitlines()]


def joined(rows: list[dict[str, object]]) -> bytes:
    """Records back into JSON lines."""
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)
