"""Break-glass for one site, as one object: its rules, its controller and its clock.

:class:`Breakglass` is built once, where a process starts: by the admin service's app
factory (``appliance.admin.app.create_app``), which hands it to the API and the pages as a
FastAPI dependency, and by the reaper's entry point (``appliance admin reaper``), which
hands it to :class:`appliance.breakglass.reaper.Reaper`. Its methods put together the
state machine (:mod:`~appliance.breakglass.windows`), the work on the controller
(:mod:`~appliance.breakglass.provisioning`) and the deadlines
(:mod:`~appliance.breakglass.deadlines`); each caller passes only its database session,
the window and who is asking.

The controller client comes from ``controller``, called when one is needed; it raises
ZitiError when none can be had (no controller installed, or none reachable). Approving,
activating and listing connections need one and fail with that error; ending a window
does not: the decision stands without it and the reaper finishes the cleanup later.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from appliance.breakglass import deadlines, provisioning, windows
from appliance.breakglass.clock import BootClock
from appliance.breakglass.gate import GateState
from appliance.breakglass.policy import BreakglassPolicy
from appliance.breakglass.provisioning import Connection, Handover
from appliance.breakglass.windows import WindowAsk
from appliance.db.models import BreakglassWindow, User
from appliance.ziti.errors import ZitiError
from appliance.ziti.interfaces import AccessController

__all__ = ["Breakglass", "ControllerSource"]

#: Gives the controller client when called; raises ZitiError when none can be had.
ControllerSource = Callable[[], AccessController]


class Breakglass:
    """A site's break-glass windows: request, decide, activate, end, seal, reap."""

    def __init__(
        self,
        policy: BreakglassPolicy,
        *,
        controller: ControllerSource,
        clock: Callable[[], BootClock],
    ) -> None:
        #: The site's rules (longest window, token lifetime, vendor routers).
        self.policy = policy
        #: Where the controller client comes from (see the module docstring).
        self.controller = controller
        #: Reads this host's boot clock (tests give a controllable one).
        self.clock = clock

    def __repr__(self) -> str:
        return f"Breakglass({self.policy!r})"

    # --- requests and decisions -------------------------------------------------------

    def get_window(self, db: Session, window_id: int) -> BreakglassWindow:
        """The window, or BreakglassNotFoundError."""
        return windows.get_window(db, window_id)

    def request_window(
        self, db: Session, ask: WindowAsk, *, requester: User, client: str
    ) -> BreakglassWindow:
        """Record a request; nothing is granted until another admin approves it."""
        return windows.request_window(db, self.policy, ask, requester=requester, client=client)

    def request_extension(
        self,
        db: Session,
        parent: BreakglassWindow,
        *,
        requester: User,
        reason: str,
        ticket: str,
        minutes: int,
        client: str,
    ) -> BreakglassWindow:
        """Ask for ``minutes`` more on an active window, approved like any request."""
        return windows.request_extension(
            db,
            self.policy,
            parent,
            requester=requester,
            reason=reason,
            ticket=ticket,
            minutes=minutes,
            client=client,
        )

    def approve(
        self, db: Session, window: BreakglassWindow, *, approver: User, note: str, client: str
    ) -> list[Handover]:
        """A second admin says yes: an extension moves its parent's end; a window that
        starts now is activated (its tokens are returned, once); a later one waits."""
        controller, clock = self.controller(), self.clock()
        if not windows.approve(db, window, approver=approver, note=note, client=client):
            return []
        return provisioning.activate(
            db, controller, self.policy, window, actor=approver.username, client=client, clock=clock
        )

    def activate(
        self, db: Session, window: BreakglassWindow, *, admin: User, client: str
    ) -> list[Handover]:
        """Start an approved window at or after its start time; only its approver may,
        since the tokens are handed over by whoever approved."""
        controller, clock = self.controller(), self.clock()
        windows.check_activation(window, admin=admin)
        return provisioning.activate(
            db, controller, self.policy, window, actor=admin.username, client=client, clock=clock
        )

    def deny(
        self, db: Session, window: BreakglassWindow, *, approver: User, note: str, client: str
    ) -> None:
        """A second admin says no."""
        windows.deny(db, window, approver=approver, note=note, client=client)

    def withdraw(
        self, db: Session, window: BreakglassWindow, *, requester: User, client: str
    ) -> None:
        """The requester takes back a request that has not started."""
        windows.withdraw(db, window, requester=requester, client=client)

    # --- ending -------------------------------------------------------------------------

    def revoke(
        self, db: Session, window: BreakglassWindow, *, actor: str, reason: str, client: str
    ) -> bool:
        """End an active window now: the decision is committed first, then the cleanup
        on the controller. True when the cleanup was confirmed; if not, the reaper
        retries it."""
        controller = self._controller_if_any()
        windows.end(db, window, how="revoked", actor=actor, reason=reason, client=client)
        if controller is None:
            return False
        return provisioning.confirm_cleanup(
            db, controller, self.policy, window, actor=actor, client=client
        )

    def seal(self, db: Session, *, admin: User, client: str) -> list[int]:
        """End every window at once: active ones are revoked, pending ones denied."""
        controller = self._controller_if_any()
        ended = windows.seal(db, admin=admin, client=client)
        if controller is not None:
            provisioning.finish_cleanups(
                db, controller, self.policy, actor=admin.username, client=client
            )
        return ended

    def reap(
        self, db: Session, *, clock: BootClock | None = None, now: datetime | None = None
    ) -> list[int]:
        """End what is over, expire what never started in time, retry unconfirmed
        cleanups (when a controller client can be had); the windows that changed state."""
        changed = self.end_due(db, clock=clock, now=now)
        self.finish_cleanups(db, actor="reaper")
        return changed

    def end_due(
        self, db: Session, *, clock: BootClock | None = None, now: datetime | None = None
    ) -> list[int]:
        """Decide every end that is due (no controller work); the windows that changed.
        ``clock`` is a reading taken by the caller, else one is taken now."""
        return deadlines.end_due(db, clock=clock or self.clock(), now=now)

    def finish_cleanups(self, db: Session, *, actor: str, client: str = "") -> list[int]:
        """Clean up every ended window the controller has not confirmed yet; the confirmed
        ones (none while no controller client can be had)."""
        controller = self._controller_if_any()
        if controller is None:
            return []
        return provisioning.finish_cleanups(db, controller, self.policy, actor=actor, client=client)

    def gate_state(
        self, db: Session, *, clock: BootClock | None = None, now: datetime | None = None
    ) -> GateState:
        """How the nftables gate should stand: open until the latest active window's end."""
        return deadlines.gate_state(db, clock or self.clock(), now)

    # --- watching -----------------------------------------------------------------------

    def connections(self, window: BreakglassWindow) -> list[Connection]:
        """Which engineer of ``window`` is connected, to what, since when."""
        return provisioning.connections(self.controller(), window)

    def _controller_if_any(self) -> AccessController | None:
        try:
            return self.controller()
        except ZitiError:
            return None
