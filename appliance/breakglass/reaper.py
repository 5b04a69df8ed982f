"""The reaper: a process of its own that ends break-glass windows on time.

It does not trust the web process to be alive. Every tick it ends active windows whose
time is up on either clock, expires requests that never started in time, retries cleanups
the controller did not confirm, sets the nftables gate to the latest open window's end
(closed when there is none), and records what the vendor's identities did from the
controller's event stream (appliance.breakglass.events). If the database cannot be read,
the gate closes: an unknown state is treated as "no window".
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from sqlalchemy.orm import sessionmaker

from appliance.admin.controller import make_controller
from appliance.admin.services.breakglass import finish_cleanups, gate_state, reap
from appliance.admin.settings import AdminSettings
from appliance.breakglass.clock import BootClock, read_boot_clock
from appliance.breakglass.events import EventIngester
from appliance.breakglass.gate import GateConfig, GateState, apply_gate
from appliance.db.engine import make_engine
from appliance.errors import ApplianceError
from appliance.ziti.errors import ZitiError
from appliance.ziti.interfaces import AccessController

__all__ = ["Reaper"]

log = logging.getLogger("appliance.breakglass.reaper")


class Reaper:
    """One reaper loop over the admin database."""

    def __init__(
        self,
        settings: AdminSettings,
        *,
        clock: Callable[[], BootClock] = read_boot_clock,
        controller: AccessController | None = None,
        nft: Sequence[str] = ("nft",),
    ) -> None:
        self.settings = settings
        self.policy = settings.breakglass_policy()
        self.sessions = sessionmaker(make_engine(settings.database_url), expire_on_commit=False)
        self.clock = clock
        self.nft = tuple(nft)
        self.gate = (
            GateConfig(
                tuple(settings.breakglass_gate_interfaces), tuple(settings.breakglass_gate_ports)
            )
            if settings.breakglass_gate_interfaces
            else None
        )
        self._controller = controller
        self._controller_retry_at = 0.0
        self._events_error: str | None = None
        self.events = (
            EventIngester(settings.controller_events_file)
            if settings.controller_events_file is not None
            else None
        )
        self._gate_set: GateState | None = None
        self.stop = threading.Event()

    def controller(self) -> AccessController | None:
        """The controller client, made on first need; None while it cannot be made."""
        if self._controller is None and time.monotonic() >= self._controller_retry_at:
            try:
                self._controller = make_controller(self.settings)
            except ZitiError as exc:
                self._controller_retry_at = time.monotonic() + 60  # say it once a minute
                log.warning("no controller client (%s): windows still end, cleanup waits", exc)
        return self._controller

    def tick(self) -> list[int]:
        """One pass; returns the windows whose state changed."""
        changed: list[int] = []
        state = GateState()
        try:
            with self.sessions() as db:
                clock = self.clock()
                changed = reap(db, None, self.policy, clock=clock)
                state = gate_state(db, clock)
        except Exception:  # whatever went wrong, the gate must close
            log.exception("reaper pass failed, closing the gate")
        for window in changed:
            log.info("break-glass window %d ended", window)
        # The gate first: controller cleanups can take seconds.
        self._set_gate(state)
        controller = self.controller()
        if controller is not None:
            try:
                with self.sessions() as db:
                    finish_cleanups(db, controller, self.policy, actor="reaper")
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

    def _set_gate(self, state: GateState) -> None:
        if self.gate is None:
            return
        # Re-set only when the end moves: rewriting would restart the kernel timer.
        if self._gate_set is not None and self._gate_set.until == state.until:
            return
        try:
            apply_gate(self.gate, state, nft=self.nft)
        except ApplianceError as exc:
            log.critical("cannot set the break-glass gate: %s", exc)
            return
        self._gate_set = state
        log.info("gate %s", f"open until {state.until.isoformat()}" if state.until else "closed")

    def run(self, *, once: bool = False) -> None:
        """Tick every ``reaper_interval_seconds`` until stopped (SIGTERM/SIGINT)."""
        if not once:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        interval = self.settings.reaper_interval_seconds
        while True:
            started = time.monotonic()
            self.tick()
            if once or self.stop.wait(max(0.0, interval - (time.monotonic() - started))):
                return

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()
