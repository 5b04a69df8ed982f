"""The admin service's watch over its audit log: check at start, on a schedule and when
asked, and sign a checkpoint every N records or T seconds. A failed check is logged as
CRITICAL, shown on every page and in /api/v1/audit/status; it never goes unnoticed.

The service makes its signing key once, at start (:meth:`AuditWatch.ensure_key`); the
watch only loads it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from appliance.admin.settings import AdminSettings
from appliance.admin.storage_faults import StorageRefusals, log_watch_failure
from appliance.audit.check import check_log
from appliance.audit.checkpoint import make_checkpoint
from appliance.audit.signing_key import KEY_FILE, AuditKeyError, create_key, load_key
from appliance.db.models import AuditCheckpoint, AuditEvent, utcnow
from appliance.errors import ApplianceError

__all__ = ["AuditStatus", "AuditWatch", "AuditWatchMissingError", "records_in_log", "watch_of"]

log = logging.getLogger("appliance.audit")


@dataclass
class AuditStatus:
    """The last integrity check of the live log."""

    ok: bool | None = None
    message: str = "not checked yet"
    checked_at: datetime | None = None
    records: int = 0
    checkpoints: int = field(default=0)

    def summary(self, records_now: int, now: datetime | None = None) -> str:
        """One line for people: when the log was checked, what that covered, what is newer.

        ``records_now`` is how many records the log holds now, e.g. "checked 15:32 UTC:
        1 record, 0 checkpoints; 2 newer records not yet checked".
        """
        if self.checked_at is None:
            return f"not checked yet; the log holds {_count(records_now, 'record')}"
        when = _when(self.checked_at, now or utcnow())
        if not self.ok:
            return f"checked {when}: {self.message}"
        newer = max(records_now - self.records, 0)
        return (
            f"checked {when}: {_count(self.records, 'record')}, "
            f"{_count(self.checkpoints, 'checkpoint')}; "
            + (f"{_count(newer, 'newer record')} not yet checked" if newer else "nothing newer")
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _when(moment: datetime, now: datetime) -> str:
    return f"{moment:%H:%M} UTC" if moment.date() == now.date() else f"{moment:%Y-%m-%d %H:%M} UTC"


class AuditWatchMissingError(ApplianceError):
    """The service's audit watch is not there: the app was built but never started."""

    http_status = 503


def watch_of(request: Request) -> AuditWatch:
    """The app's audit watch (made when the service starts)."""
    watch: AuditWatch | None = getattr(request.app.state, "audit_watch", None)
    if watch is None:
        raise AuditWatchMissingError("the audit watch is not running: the service never started")
    return watch


def records_in_log(db: Session) -> int:
    """How many records the log holds now (its last sequence number)."""
    return db.scalar(select(func.max(AuditEvent.seq))) or 0


class AuditWatch:
    """A daemon thread: checkpoint when due, full check every ``check_minutes``, and the
    storage's refusals recorded once it takes writes again."""

    def __init__(
        self,
        settings: AdminSettings,
        sessions: sessionmaker[Session],
        refusals: StorageRefusals | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        #: What the storage refused, recorded on the watch's next pass that can write.
        self.refusals = refusals or StorageRefusals()
        self.status = AuditStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._checking = threading.Lock()

    def ensure_key(self) -> None:
        """Make the service's signing key if it has none and its log has no checkpoints.

        The one place the service makes a key. A log whose checkpoints were signed by a
        key that is gone gets no new one: the key must come back from backup, and until
        then every check fails saying so.
        """
        path = self.settings.data_dir / KEY_FILE
        if path.exists():
            return
        with self.sessions() as db:
            signed = db.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0
        if signed:
            log.critical(
                "AUDIT SIGNING KEY MISSING: %s is gone but the log holds %d signed "
                "checkpoints; restore it from backup (no new key was made)",
                path,
                signed,
            )
        elif create_key(self.settings.data_dir):
            log.warning("made the audit signing key %s: back it up with the database", path)

    def check_now(self) -> AuditStatus:
        """Run the full check and remember (and log) the result; one check at a time.

        The caller must hold no open transaction on the database (SQLite transactions
        take the write lock at their start).
        """
        with self._checking:
            self.status = self._check()
        return self.status

    def _check(self) -> AuditStatus:
        try:
            key = load_key(self.settings.data_dir)
            with self.sessions() as db:
                result = check_log(db, key.public_key())
        except ApplianceError as exc:
            log.critical("AUDIT LOG INTEGRITY CHECK FAILED: %s", exc)
            return AuditStatus(False, str(exc), utcnow())
        return AuditStatus(
            True,
            f"{_count(result.records, 'record')} and "
            f"{_count(result.checkpoints, 'checkpoint')} verify",
            utcnow(),
            result.records,
            result.checkpoints,
        )

    def checkpoint_if_due(self) -> None:
        """Sign a checkpoint when N records or T seconds have passed since the last one.

        Without the right key nothing is signed, and the status says why (once).
        """
        try:
            with self.sessions() as db:
                last = db.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()))
                size = db.scalar(select(func.count()).select_from(AuditEvent)) or 0
                done = last.tree_size if last else 0
                age = (utcnow() - last.created_at).total_seconds() if last else float("inf")
                if size > done and (
                    size - done >= self.settings.checkpoint_records
                    or age >= self.settings.checkpoint_seconds
                ):
                    make_checkpoint(db, load_key(self.settings.data_dir))
                    db.commit()
        except AuditKeyError as exc:
            if self.status.ok is not False or self.status.message != str(exc):
                log.critical("AUDIT LOG NOT CHECKPOINTED: %s", exc)
                self.status = AuditStatus(False, str(exc), utcnow())

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
                self.refusals.record(self.sessions)
                self.checkpoint_if_due()
                if elapsed >= self.settings.audit_check_minutes * 60:
                    elapsed = 0.0
                    self.check_now()
            except Exception as exc:  # the watch must outlive a bad moment; it is logged
                log_watch_failure(log, "audit watch", exc)
