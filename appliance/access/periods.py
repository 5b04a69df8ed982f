"""Budget periods in the site's timezone: day, ISO week (from Monday), calendar month.

One place decides where a period starts and when it resets, so a budget's refusal and
its reset time agree with what the usage pages call a day. Dates are the site's local
dates; boundaries are local midnights turned into aware datetimes (DST-safe: a local
midnight is resolved with the zone's rules on that date).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = ["Period", "local_day", "period_start", "reset_at"]


class Period(StrEnum):
    """A token budget's period; the value is the limit's name suffix."""

    day = "day"
    week = "week"
    month = "month"


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    """The site's date at ``moment``."""
    return moment.astimezone(zone).date()


def period_start(day: date, period: Period) -> date:
    """The first local date of the period holding ``day``."""
    if period is Period.day:
        return day
    if period is Period.week:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_start(day: date, period: Period) -> date:
    start = period_start(day, period)
    if period is Period.day:
        return start + timedelta(days=1)
    if period is Period.week:
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def reset_at(moment: datetime, period: Period, zone: ZoneInfo) -> datetime:
    """When the period holding ``moment`` ends: the next period's local midnight."""
    following = _next_start(local_day(moment, zone), period)
    return datetime.combine(following, time(0), tzinfo=zone)
