"""Admission rules with controllable clocks: budgets by period, rate, concurrency, groups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from appliance.access.limiter import Limiter, Refusal
from appliance.access.periods import Period, period_start, reset_at
from appliance.access.policy import PolicyError, parse_policy
from tests.unit.access_fakes import policy_document


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.mono


def limiter(clock: Clock, **document: object) -> Limiter:
    found = Limiter(now=clock.now, monotonic=clock.monotonic)
    found.set_policy(parse_policy("v", policy_document(**document)))  # type: ignore[arg-type]
    return found


ALICE = {"alice": {"groups": ["team"], "models": ["tiny"]}}


def test_a_calendar_month_resets_at_the_sites_midnight_not_utcs() -> None:
    # 2026-12-31 23:30 UTC is already 2027-01-01 00:30 in Berlin.
    clock = Clock(datetime(2026, 12, 31, 22, 30, tzinfo=UTC))  # 23:30 in Berlin
    found = limiter(
        clock,
        identities=ALICE,
        limits={"@alice": {"tokens_per_month": 100}},
        timezone="Europe/Berlin",
    )
    found.load_usage([("alice", date(2026, 12, 31), 95)])
    with pytest.raises(Refusal) as refused:
        found.admit("alice", prompt_bound=10, max_tokens=5)
    assert refused.value.limit == "tokens_per_month"
    assert refused.value.resets == datetime(2027, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    assert refused.value.retry_after == 30 * 60
    clock.at += timedelta(hours=1)  # 00:30 in Berlin, 23:30 UTC: a new month at the site
    ticket = found.admit("alice", prompt_bound=10, max_tokens=5)
    assert ticket.day == date(2027, 1, 1)


@pytest.mark.parametrize(
    ("day", "period", "start"),
    [
        (date(2026, 12, 6), Period.week, date(2026, 11, 30)),  # a Sunday: the week began Monday
        (date(2026, 12, 7), Period.week, date(2026, 12, 7)),
        (date(2026, 2, 28), Period.month, date(2026, 2, 1)),
        (date(2026, 12, 6), Period.day, date(2026, 12, 6)),
    ],
)
def test_period_starts(day: date, period: Period, start: date) -> None:
    assert period_start(day, period) == start


def test_reset_follows_daylight_saving() -> None:
    zone = ZoneInfo("Europe/Berlin")
    # The last Sunday of March: midnight next day is 22:00 UTC, not 23:00.
    assert reset_at(datetime(2026, 3, 29, 12, tzinfo=UTC), Period.day, zone).astimezone(
        UTC
    ) == datetime(2026, 3, 29, 22, tzinfo=UTC)


def test_requests_per_minute_is_a_sliding_window() -> None:
    clock = Clock(datetime(2026, 12, 6, 12, tzinfo=UTC))
    found = limiter(clock, identities=ALICE, limits={"@alice": {"requests_per_minute": 2}})
    for _ in range(2):
        found.settle(found.admit("alice", prompt_bound=1, max_tokens=1), 2)
        clock.mono += 20
    with pytest.raises(Refusal) as refused:
        found.admit("alice", prompt_bound=1, max_tokens=1)
    assert refused.value.limit == "requests_per_minute"
    assert refused.value.retry_after == 20  # the first request leaves the window then
    clock.mono += 20
    found.admit("alice", prompt_bound=1, max_tokens=1)


def test_concurrent_requests_are_counted_until_settled() -> None:
    clock = Clock(datetime(2026, 12, 6, 12, tzinfo=UTC))
    found = limiter(clock, identities=ALICE, limits={"#team": {"concurrent_requests": 1}})
    first = found.admit("alice", prompt_bound=1, max_tokens=1)
    with pytest.raises(Refusal) as refused:
        found.admit("alice", prompt_bound=1, max_tokens=1)
    assert (refused.value.limit, refused.value.subject) == ("concurrent_requests", "#team")
    found.settle(first, 2)
    found.admit("alice", prompt_bound=1, max_tokens=1)


def test_a_group_budget_is_shared_by_its_members() -> None:
    clock = Clock(datetime(2026, 12, 6, 12, tzinfo=UTC))
    found = limiter(
        clock,
        identities={
            "alice": {"groups": ["team"], "models": ["tiny"]},
            "bob": {"groups": ["team"], "models": ["tiny"]},
        },
        limits={"#team": {"tokens_per_week": 100}},
    )
    found.settle(found.admit("alice", prompt_bound=10, max_tokens=40), 50)
    found.settle(found.admit("bob", prompt_bound=10, max_tokens=30), 40)
    assert found.used("#team", Period.week, date(2026, 12, 6)) == 90
    with pytest.raises(Refusal) as refused:
        found.admit("bob", prompt_bound=10, max_tokens=5)
    assert refused.value.subject == "#team"


def test_reservations_hold_the_budget_while_requests_are_in_flight() -> None:
    clock = Clock(datetime(2026, 12, 6, 12, tzinfo=UTC))
    found = limiter(clock, identities=ALICE, limits={"@alice": {"tokens_per_day": 100}})
    held = [found.admit("alice", prompt_bound=10, max_tokens=15) for _ in range(4)]
    with pytest.raises(Refusal):
        found.admit("alice", prompt_bound=10, max_tokens=15)
    for ticket in held:
        found.settle(ticket, 12)  # each used less than it reserved: room again
    found.admit("alice", prompt_bound=10, max_tokens=15)


def test_max_tokens_is_lowered_to_what_is_left_and_never_past_the_context() -> None:
    clock = Clock(datetime(2026, 12, 6, 12, tzinfo=UTC))
    found = limiter(
        clock, identities=ALICE, limits={"@alice": {"tokens_per_day": 60}}, context_tokens=256
    )
    ticket = found.admit("alice", prompt_bound=20, max_tokens=None)
    assert ticket.max_tokens == 40
    assert ticket.reserve == 60
    other = Limiter(now=clock.now, monotonic=clock.monotonic)
    other.set_policy(parse_policy("v", policy_document(identities=ALICE, context_tokens=256)))
    assert other.admit("alice", prompt_bound=20, max_tokens=None).max_tokens is None


def test_usage_of_a_group_follows_its_members_when_the_policy_changes() -> None:
    clock = Clock(datetime(2026, 12, 6, 12, tzinfo=UTC))
    found = limiter(clock, identities=ALICE)
    found.load_usage([("alice", date(2026, 12, 6), 70)])
    assert found.used("#team", Period.day, date(2026, 12, 6)) == 70
    found.set_policy(
        parse_policy("w", policy_document(identities={"alice": {"groups": [], "models": []}}))
    )
    assert found.used("#team", Period.day, date(2026, 12, 6)) == 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"keys": "nope"}, "malformed"),
        ({"limits": {"@a": {"tokens_per_day": 0}}}, "positive integer"),
        ({"limits": {"@a": {"tokens_per_day": True}}}, "positive integer"),
        ({"context_tokens": 0}, "context_tokens"),
    ],
)
def test_a_malformed_policy_is_refused_not_applied(change: dict[str, object], why: str) -> None:
    document = policy_document(identities=ALICE)
    document.update(change)
    with pytest.raises(PolicyError, match=why):
        parse_policy("v", document)
