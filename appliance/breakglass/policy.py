"""What the admin service's settings tell break-glass: the window rules and the reaper's.

Break-glass does not read the admin service's settings itself (it sits below the admin
service); ``appliance.admin.settings.AdminSettings`` builds these from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.breakglass.gate import GateConfig

__all__ = ["BreakglassPolicy", "ReaperConfig"]


@dataclass(frozen=True)
class BreakglassPolicy:
    """How long windows and tokens may be, and where the vendor may connect."""

    max_minutes: int
    enrollment_minutes: int
    router_roles: tuple[str, ...]
    confirm_seconds: float = 10.0
    #: The overlay services a window may name, as the installer lists the site's (its own
    #: services and a ``vendor-shell-HOST`` per opted-in host); None: any name, checked
    #: against the controller only at activation (a site installed before the list).
    services: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ReaperConfig:
    """Where the reaper reads windows, how often, and what else it keeps in step."""

    #: The admin service's database (SQLAlchemy URL).
    database_url: str
    #: Seconds from the start of one tick to the start of the next.
    interval_seconds: float = 0.25
    #: The nftables gate on the vendor access path; None where this host has none.
    gate: GateConfig | None = None
    #: The controller's JSON event log, read into the audit log; None: not read.
    events_file: Path | None = None
