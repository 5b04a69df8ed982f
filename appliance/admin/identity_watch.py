"""Identity states follow the controller by themselves: a background sync every
``identity_sync_seconds`` (ADR 0016).

Each pass is :func:`appliance.admin.services.identities.sync_identities` as actor
``identity-watch``, audited only when it changed something. A controller that cannot be
reached is audited and logged once per outage (and logged once when it answers again),
never raised: the next pass tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from appliance.admin.services.identities import SyncReport, sync_identities
from appliance.admin.storage_faults import log_watch_failure
from appliance.audit.record import record_event
from appliance.errors import ApplianceError
from appliance.ziti.interfaces import IdentityController

__all__ = ["ACTOR", "IdentityWatch"]

log = logging.getLogger("appliance.admin.identity_watch")
ACTOR = "identity-watch"


class IdentityWatch:
    """A daemon thread that syncs identity states with the controller every ``seconds``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        controller: Callable[[], IdentityController],
        seconds: float,
    ) -> None:
        self.sessions = sessions
        self.controller = controller
        self.seconds = seconds
        self.failing: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> SyncReport | None:
        """One sync; the report, or None when the controller could not be asked."""
        try:
            with self.sessions() as db:
                report = sync_identities(
                    db, self.controller(), actor=ACTOR, client="", audit_unchanged=False
                )
                db.commit()
        except ApplianceError as exc:
            if self.failing is None:
                log.warning("identity sync failed, will retry every %ss: %s", self.seconds, exc)
                self._audit_outage(exc)
            self.failing = str(exc)
            return None
        if self.failing is not None:
            log.info("identity sync works again")
            self.failing = None
        return report

    def _audit_outage(self, exc: ApplianceError) -> None:
        with self.sessions() as db:
            record_event(
                db,
                actor=ACTOR,
                action="identity.sync",
                target="*",
                outcome="error",
                details={"error": str(exc)[:500], "retry_seconds": self.seconds},
            )
            db.commit()

    def start(self) -> None:
        """Keep syncing in the background until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="identity-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread (a pass under way finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.run_once()
            except Exception as exc:  # the watch must outlive a bad moment (a full disk, say)
                log_watch_failure(log, "identity watch", exc)
