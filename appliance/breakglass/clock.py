"""A window's end on two clocks, so that moving the wall clock cannot extend it.

The wall clock (``ends_at``) is what people read and what nftables' ``meta time`` compares.
CLOCK_BOOTTIME counts seconds since boot, including suspend, and no one can set it; the
deadline on that clock is kept with the boot's id. A window is over when either clock says
so. After a reboot the boot-time deadline is lost, and the window is over too: a host that
restarted during a window comes back sealed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["BootClock", "Deadline", "WallStepWatch", "is_over", "read_boot_clock"]

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class BootClock:
    """The current boot and seconds since it, read together."""

    boot_id: str
    boottime: float

    def deadline(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now on this boot's clock."""
        return Deadline(self.boot_id, self.boottime + seconds)


@dataclass(frozen=True)
class Deadline:
    """A point on one boot's CLOCK_BOOTTIME."""

    boot_id: str
    boottime: float

    def remaining(self, clock: BootClock) -> float:
        """Seconds left; zero once passed or when the host has rebooted since."""
        if clock.boot_id != self.boot_id:
            return 0.0
        return max(0.0, self.boottime - clock.boottime)

    def extended(self, seconds: float) -> Deadline:
        """The same deadline moved later by ``seconds``."""
        return Deadline(self.boot_id, self.boottime + seconds)


def read_boot_clock() -> BootClock:
    """This host's boot id and CLOCK_BOOTTIME (shared by containers on the host)."""
    return BootClock(
        BOOT_ID.read_text(encoding="ascii").strip(), time.clock_gettime(time.CLOCK_BOOTTIME)
    )


def is_over(ends_at: datetime, deadline: Deadline | None, now: datetime, clock: BootClock) -> bool:
    """Whether a window ending at ``ends_at`` (and ``deadline``) is over by either clock."""
    if now >= ends_at:
        return True
    return deadline is None or deadline.remaining(clock) <= 0


class WallStepWatch:
    """Notices the wall clock being stepped: its distance from the boot clock moves.

    The two clocks run together (NTP slews the wall clock by parts per million), so a jump
    of that distance between two readings is a step: someone set the clock, or a time
    source corrected it at once. Windows end by the boot clock anyway; the step is news
    for the audit log, which stamps its records with the wall clock.
    """

    def __init__(self, threshold_s: float = 2.0) -> None:
        self.threshold_s = threshold_s
        self._offset: float | None = None
        self._boot_id: str | None = None

    def moved(self, wall: float, clock: BootClock) -> float | None:
        """Seconds the wall clock was stepped since the last reading (positive:
        forward), or None when it was not."""
        offset = wall - clock.boottime
        previous = self._offset if self._boot_id == clock.boot_id else None
        self._offset, self._boot_id = offset, clock.boot_id
        if previous is None or abs(offset - previous) < self.threshold_s:
            return None
        return offset - previous
