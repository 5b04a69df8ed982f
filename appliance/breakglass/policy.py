"""A site's break-glass rules, as the admin service's settings give them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BreakglassPolicy"]


@dataclass(frozen=True)
class BreakglassPolicy:
    """How long windows and tokens may be, and where the vendor may connect."""

    max_minutes: int
    enrollment_minutes: int
    router_roles: tuple[str, ...]
    confirm_seconds: float = 10.0
