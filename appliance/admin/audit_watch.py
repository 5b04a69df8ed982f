"""The admin service's watch over its audit log: check at start and on a schedule, and
sign a checkpoint every N records or T seconds. A failed check is logged as CRITICAL,
shown on every page and in /api/v1/audit/status; it never goes unnoticed."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from appliance.admin.settings import AdminSettings
from appliance.audit.check import check_log
from appliance.audit.checkpoint import load_or_create_key, make_checkpoint
from appliance.db.models import AuditCheckpoint, AuditEvent, utcnow
from appliance.errors import ApplianceError

__all__ = ["AuditStatus", "AuditWatch"]

log = logging.getLogger("appliance.audit")


@dataclass
class AuditStatus:
    """The last integrity check of the live log."""

    ok: bool | None = None
    message: str = "not checked yet"
    checked_at: datetime | None = None
    records: int = 0
    checkpoints: int = field(default=0)


class AuditWatch:
    """A daemon thread: checkpoint when due, full check every ``check_minutes``."""

    def __init__(self, settings: AdminSettings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.status = AuditStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_check = 0.0

    def check_now(self) -> AuditStatus:
        """Run the full check and remember (and log) the result."""
        key = load_or_create_key(self.settings.data_dir)
        with self.sessions() as db:
            try:
                result = check_log(db, key.public_key())
            except ApplianceError as exc:
                self.status = AuditStatus(False, str(exc), utcnow())
                log.critical("AUDIT LOG INTEGRITY CHECK FAILED: %s", exc)
                return self.status
        self.status = AuditStatus(
            True,
            f"{result.records} records and {result.checkpoints} checkpoints verify",
            utcnow(),
            result.records,
            result.checkpoints,
        )
        return self.status

    def checkpoint_if_due(self) -> None:
        """Sign a checkpoint when N records or T seconds have passed since the last one."""
        key = load_or_create_key(self.settings.data_dir)
        with self.sessions() as db:
            last = db.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()))
            size = db.scalar(select(func.count()).select_from(AuditEvent)) or 0
            done = last.tree_size if last else 0
            age = (utcnow() - last.created_at).total_seconds() if last else float("inf")
            if size > done and (
                size - done >= self.settings.checkpoint_records
                or age >= self.settings.checkpoint_seconds
            ):
                make_checkpoint(db, key)
                db.commit()

    def start(self) -> None:
        """Check once now, then keep watching in the background."""
        self.check_now()
        self._thread = threading.Thread(target=self._run, name="audit-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        elapsed = 0.0
        while not self._stop.wait(5.0):
            elapsed += 5.0
            try:
                self.checkpoint_if_due()
                if elapsed >= self.settings.audit_check_minutes * 60:
                    elapsed = 0.0
                    self.check_now()
            except Exception:  # the watch must outlive a bad moment; it is logged loudly
                log.exception("audit watch failed")
