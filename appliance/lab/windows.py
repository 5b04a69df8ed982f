"""An active break-glass window as activation leaves it, written straight into an admin
database. Activation itself creates identities on the OpenZiti controller, which cannot be
built on the development machine; the tests and benchmarks of what happens *after* it
(the reaper, the gate, revoke, evidence) start from this row instead."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from appliance.breakglass.clock import BootClock, read_boot_clock
from appliance.db.engine import make_engine
from appliance.db.models import BreakglassWindow, WindowState, utcnow

__all__ = ["add_active_window"]


def add_active_window(
    url: str,
    seconds: float,
    *,
    clock: BootClock | None = None,
    ziti_objects: dict[str, Any] | None = None,
) -> int:
    """Commit a window that is active for ``seconds`` more (on both clocks); its id."""
    now = utcnow()
    clock = clock or read_boot_clock()
    with Session(make_engine(url)) as db:
        window = BreakglassWindow(
            state=WindowState.active,
            requester="alice",
            reason="as activation leaves it",
            ticket="LAB-1",
            scope=["ssh-gw1"],
            engineers=["eve"],
            duration_minutes=max(1, round(seconds / 60)),
            created_at=now,
            decided_by="bob",
            decided_at=now,
            decision_note="",
            activated_at=now,
            ends_at=now + timedelta(seconds=seconds),
            boot_id=clock.boot_id,
            deadline_boottime=clock.deadline(seconds).boottime,
            end_reason="",
            ziti_objects=ziti_objects or {},
        )
        db.add(window)
        db.commit()
        return window.id
