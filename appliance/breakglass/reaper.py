"""The reaper: a process of its own that ends break-glass windows on time.

It does not trust the web process to be alive. Every tick it ends active windows whose
time is up on either clock, expires requests that never started in time, retries cleanups
the controller did not confirm, sets the nftables gate to the latest open window's end
(closed when there is none), and records what the vendor's identities did from the
controller's event stream (appliance.breakglass.events). If the database cannot be read,
the gate closes: an unknown state is treated as "no window".

Its entry point (``appliance admin reaper``) builds the :class:`Breakglass` it works
with from the admin service's settings, with a :class:`ControllerOnDemand` as its
controller.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from sqlalchemy.orm import sessionmaker

from appliance.audit.record import record_event
from appliance.breakglass.clock import BootClock, WallStepWatch
from appliance.breakglass.events import EventIngester
from appliance.breakglass.gate import GateState, apply_gate
from appliance.breakglass.policy import ReaperConfig
from appliance.breakglass.service import Breakglass
from appliance.db.engine import make_engine
from appliance.errors import ApplianceError
from appliance.ziti.errors import ZitiError
from appliance.ziti.interfaces import AccessController

__all__ = ["ControllerOnDemand", "Reaper"]

log = logging.getLogger("appliance.breakglass.reaper")


class ControllerOnDemand:
    """The reaper's controller client: made on first need, then kept.

    When it cannot be made, that is said once and not tried again for ``retry_seconds``
    (the error is raised again meanwhile): windows still end and the gate still closes;
    only the cleanups on the controller wait.
    """

    def __init__(
        self, make: Callable[[], AccessController], *, retry_seconds: float = 60.0
    ) -> None:
        self._make = make
        self.retry_seconds = retry_seconds
        self._client: AccessController | None = None
        self._failure: ZitiError | None = None
        self._retry_at = 0.0

    def __call__(self) -> AccessController:
        """The client, or the ZitiError that keeps it from being made."""
        if self._client is not None:
            return self._client
        if self._failure is not None and time.monotonic() < self._retry_at:
            raise self._failure.with_traceback(None)
        try:
            self._client = self._make()
        except ZitiError as exc:
            self._failure, self._retry_at = exc, time.monotonic() + self.retry_seconds
            log.warning("no controller client (%s): windows still end, cleanup waits", exc)
            raise
        self._failure = None
        return self._client


class Reaper:
    """One reaper loop over the admin database."""

    def __init__(
        self, breakglass: Breakglass, config: ReaperConfig, *, nft: Sequence[str] = ("nft",)
    ) -> None:
        self.breakglass = breakglass
        self.config = config
        self.sessions = sessionmaker(make_engine(config.database_url), expire_on_commit=False)
        self.nft = tuple(nft)
        self.events = EventIngester(config.events_file) if config.events_file is not None else None
        self._events_error: str | None = None
        self._gate_set: GateState | None = None
        self._wall_steps = WallStepWatch()
        self.stop = threading.Event()

    def tick(self) -> list[int]:
        """One pass; returns the windows whose state changed."""
        changed: list[int] = []
        state = GateState()
        # The boot clock and the wall clock, read together (None if the pass failed first).
        read: tuple[BootClock, float] | None = None
        try:
            with self.sessions() as db:
                clock = self.breakglass.clock()
                read = (clock, time.time())
                changed = self.breakglass.end_due(db, clock=clock)
                state = self.breakglass.gate_state(db, clock=clock)
        except Exception:  # whatever went wrong, the gate must close
            log.exception("reaper pass failed, closing the gate")
        for window in changed:
            log.info("break-glass window %d ended", window)
        # The gate first: controller cleanups can take seconds.
        self._set_gate(state)
        if read is not None:
            self._note_wall_step(*read)
        if self._controller_ready():
            try:
                with self.sessions() as db:
                    self.breakglass.finish_cleanups(db, actor="reaper")
            except Exception:  # the loop must outlive any one failure
                log.exception("break-glass cleanup pass failed; the next tick retries")
        # Last: what the vendor did is evidence, not enforcement; it never delays the gate.
        if self.events is not None:
            try:
                with self.sessions() as db:
                    self.events.ingest(db)
                self._events_error = None
            except Exception as exc:
                # Said once per distinct failure, not four times a second.
                if str(exc) != self._events_error:
                    log.exception("reading the controller's events failed; every tick retries")
                self._events_error = str(exc)
        return changed

    def _note_wall_step(self, clock: BootClock, wall: float) -> None:
        """Say in the journal and the audit log that the wall clock was stepped: windows
        still end at their real end (the boot clock and the gate's kernel timer), but the
        audit log's times jump with it."""
        moved = self._wall_steps.moved(wall, clock)
        if moved is None:
            return
        said = f"{abs(moved):.1f} s {'forward' if moved > 0 else 'back'}"
        log.warning(
            "this host's wall clock was stepped %s; break-glass windows still end by the "
            "boot clock, and audit records are stamped with the new time",
            said,
        )
        try:
            with self.sessions() as db:
                record_event(
                    db,
                    actor="reaper",
                    action="clock.stepped",
                    target="site",
                    details={"seconds": round(moved, 1), "said": f"wall clock stepped {said}"},
                )
                db.commit()
        except Exception:  # the loop must outlive any one failure (a full disk, say)
            log.exception("the clock step could not be recorded in the audit log")

    def _controller_ready(self) -> bool:
        """Whether a controller client can be had now (else the cleanups wait)."""
        try:
            self.breakglass.controller()
        except ZitiError:
            return False
        return True

    def _set_gate(self, state: GateState) -> None:
        gate = self.config.gate
        if gate is None:
            return
        # Re-set only when the end moves: rewriting would restart the kernel timer.
        if self._gate_set is not None and self._gate_set.until == state.until:
            return
        try:
            apply_gate(gate, state, nft=self.nft)
        except ApplianceError as exc:
            log.critical("cannot set the break-glass gate: %s", exc)
            return
        self._gate_set = state
        log.info("gate %s", f"open until {state.until.isoformat()}" if state.until else "closed")

    def run(self, *, once: bool = False) -> None:
        """Tick every ``interval_seconds`` until stopped (SIGTERM/SIGINT)."""
        if not once:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        interval = self.config.interval_seconds
        while True:
            started = time.monotonic()
            self.tick()
            if once or self.stop.wait(max(0.0, interval - (time.monotonic() - started))):
                return

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()
