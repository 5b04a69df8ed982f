"""When windows are over, on either clock: what the reaper ends, and until when the gate
stays open.

A window is over when its wall-clock end has passed or its boot-clock deadline has run
out (or the host restarted since it began: appliance.breakglass.clock). The reaper's tick
ends every such window (:func:`end_due`), expires requests that never started in time,
and sets the nftables gate (appliance.breakglass.gate) to :func:`gate_state`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.breakglass.clock import BootClock, is_over
from appliance.breakglass.gate import GateState
from appliance.breakglass.records import record
from appliance.breakglass.windows import OPEN_STATES, deadline_of, end
from appliance.db.models import BreakglassWindow, WindowState, utcnow

__all__ = ["end_due", "gate_state"]


def end_due(db: Session, *, clock: BootClock, now: datetime | None = None) -> list[int]:
    """End what is over and expire what never started in time; each end is decided and
    committed, none is cleaned up here. Returns the windows that changed state."""
    now = now or utcnow()
    changed: list[int] = []
    for window in list(
        db.scalars(
            select(BreakglassWindow)
            .where(BreakglassWindow.state.in_(OPEN_STATES))
            .order_by(BreakglassWindow.id)
        )
    ):
        if window.state == WindowState.active:
            if is_over(_aware(window.ends_at, now), deadline_of(window), now, clock):
                why = (
                    "end time reached"
                    if now >= _aware(window.ends_at, now)
                    else (
                        "end time reached on the boot clock"
                        if window.boot_id == clock.boot_id
                        else "the host restarted during the window"
                    )
                )
                end(db, window, how="expired", actor="reaper", reason=why, client="")
                changed.append(window.id)
        elif window.extends_id is None and _latest_end(window) <= now:
            window.state = WindowState.expired
            window.ended_at, window.ended_by = now, "reaper"
            window.end_reason = "never started before its end"
            record(
                db,
                window,
                "expire",
                actor="reaper",
                details={"window": window.id, "reason": window.end_reason},
            )
            db.commit()
            changed.append(window.id)
    return changed


def gate_state(db: Session, clock: BootClock, now: datetime | None = None) -> GateState:
    """How the nftables gate should stand: open until the latest active window's end."""
    now = now or utcnow()
    until: datetime | None = None
    seconds = 0.0
    for window in db.scalars(
        select(BreakglassWindow).where(BreakglassWindow.state == WindowState.active)
    ):
        deadline = deadline_of(window)
        ends_at = _aware(window.ends_at, now)
        if deadline is None or is_over(ends_at, deadline, now, clock):
            continue
        # Both limits from the same window: its wall end and its boot-clock time left.
        left = min(deadline.remaining(clock), (ends_at - now).total_seconds())
        if left > seconds:
            until, seconds = ends_at, left
    return GateState(until, seconds)


def _latest_end(window: BreakglassWindow) -> datetime:
    start = window.starts_at or window.created_at
    return start + timedelta(minutes=window.duration_minutes)


def _aware(moment: datetime | None, fallback: datetime) -> datetime:
    return moment if moment is not None else fallback
