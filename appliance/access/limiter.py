"""Admission: every limit checked and the request's tokens reserved, in one step.

A request is admitted only if, for each subject that limits it (``@identity`` and each
``#group`` of the identity), the concurrent requests, the requests in the last 60 s and,
for each token budget, the tokens used so far plus those admitted requests have reserved
plus this request's reservation fit. The reservation is an upper bound of what the request
can use (prompt bound plus ``max_tokens`` per choice, or the whole context); settling
replaces it with the model's own count. When a budget has less room than the request
could use, the request is admitted with ``max_tokens`` lowered to what is left, so a
budget is never exceeded. The proxy runs admission on one event loop with no await inside,
so concurrency cannot slip a request past a limit. Pure: no I/O; clocks are injected.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from appliance.access.periods import Period, local_day, period_start, reset_at
from appliance.access.policy import Policy, empty_policy

__all__ = ["Limiter", "Refusal", "Ticket"]

_WINDOW = 60.0
#: Days of usage kept in memory: enough for the longest period (a calendar month).
_KEEP_DAYS = 40


class Refusal(Exception):  # noqa: N818 (a decision, not a fault)
    """A request over a limit: which, of whom, and when it may be tried again."""

    def __init__(
        self, limit: str, subject: str, message: str, retry_after: float, resets: datetime | None
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.subject = subject
        self.retry_after = max(1, math.ceil(retry_after))
        self.resets = resets


@dataclass(frozen=True)
class Ticket:
    """An admitted request: what it reserved, against whom, and the day it counts on."""

    identity: str
    subjects: tuple[str, ...]
    reserve: int
    day: date
    #: What the front must put in the request's ``max_tokens`` (None: leave it as sent).
    max_tokens: int | None


class Limiter:
    """Usage so far, reservations, rate windows and requests in flight, by subject."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now = now
        self._monotonic = monotonic
        self._policy = empty_policy()
        self._identity_days: dict[str, dict[date, int]] = defaultdict(dict)
        self._group_days: dict[str, dict[date, int]] = defaultdict(dict)
        self._reserved: dict[str, int] = defaultdict(int)
        self._in_flight: dict[str, int] = defaultdict(int)
        self._windows: dict[str, deque[float]] = defaultdict(deque)

    def load_usage(self, rows: Iterable[tuple[str, date, int]]) -> None:
        """Tokens already used, by identity and local day (from the usage journal)."""
        for identity, day, tokens in rows:
            days = self._identity_days[identity]
            days[day] = days.get(day, 0) + tokens
        self._regroup()

    def set_policy(self, policy: Policy) -> None:
        """A new policy: group totals follow its memberships from now on."""
        self._policy = policy
        self._regroup()

    def in_flight(self, subject: str) -> int:
        """Requests of ``subject`` admitted and not yet settled."""
        return self._in_flight.get(subject, 0)

    def in_flight_all(self) -> list[tuple[str, int]]:
        """(subject, requests in progress) for every subject that had any."""
        return list(self._in_flight.items())

    def used(self, subject: str, period: Period, today: date) -> int:
        """Tokens ``subject`` (``@identity`` or ``#group``) used in the period holding today."""
        table = self._identity_days if subject.startswith("@") else self._group_days
        start = period_start(today, period)
        return sum(v for d, v in table.get(subject[1:], {}).items() if start <= d <= today)

    def admit(
        self, identity: str, *, prompt_bound: int, max_tokens: int | None, choices: int = 1
    ) -> Ticket:
        """Admit a request of ``identity`` or raise Refusal naming the limit it is over."""
        policy = self._policy
        subjects = tuple(policy.subjects(identity))
        limited = [(s, policy.limits[s]) for s in subjects if s in policy.limits]
        now = self._now()
        today = local_day(now, policy.timezone)
        mono = self._monotonic()
        for subject, limits in limited:
            cap = limits.concurrent_requests
            if cap is not None and self._in_flight[subject] >= cap:
                raise Refusal(
                    "concurrent_requests",
                    subject,
                    f"{subject} may have {cap} requests in progress at once; one must end first",
                    1,
                    None,
                )
        for subject, limits in limited:
            rate = limits.requests_per_minute
            if rate is None:
                continue
            window = self._windows[subject]
            while window and window[0] <= mono - _WINDOW:
                window.popleft()
            if len(window) >= rate:
                wait = window[0] + _WINDOW - mono
                raise Refusal(
                    "requests_per_minute",
                    subject,
                    f"{subject} may make {rate} requests per minute; try again in "
                    f"{math.ceil(wait)} s",
                    wait,
                    now + timedelta(seconds=wait),
                )
        room: int | None = None
        tightest: tuple[str, Period, int] | None = None
        for subject, limits in limited:
            for name, budget in limits.tokens().items():
                period = Period(name)
                left = budget - self.used(subject, period, today) - self._reserved[subject]
                if room is None or left < room:
                    room, tightest = left, (subject, period, budget)
        context = policy.context_tokens
        wanted = prompt_bound + choices * max_tokens if max_tokens else choices * context
        granted = max_tokens
        if room is not None and tightest is not None and wanted > room:
            per_choice = (room - prompt_bound) // choices
            if per_choice < 1:
                subject, period, budget = tightest
                resets = reset_at(now, period, policy.timezone)
                raise Refusal(
                    f"tokens_per_{period.value}",
                    subject,
                    f"the {period.value}ly token budget of {subject} is used up: "
                    f"{budget - max(room, 0)} of {budget} tokens used or reserved, and this "
                    f"request needs at least {prompt_bound + choices}; it resets at "
                    f"{resets.isoformat()}",
                    (resets - now).total_seconds(),
                    resets,
                )
            granted = per_choice
            if context - prompt_bound >= 1:  # the model refuses max_tokens past its context
                granted = min(granted, context - prompt_bound)
            wanted = prompt_bound + choices * granted
        for subject in subjects:
            self._reserved[subject] += wanted
            self._in_flight[subject] += 1
        for subject, limits in limited:
            if limits.requests_per_minute is not None:
                self._windows[subject].append(mono)
        return Ticket(identity, subjects, wanted, today, granted if granted != max_tokens else None)

    def settle(self, ticket: Ticket, tokens: int) -> None:
        """The request ended having used ``tokens``: its reservation becomes that count."""
        for subject in ticket.subjects:
            self._reserved[subject] -= ticket.reserve
            self._in_flight[subject] -= 1
            table = self._identity_days if subject.startswith("@") else self._group_days
            days = table[subject[1:]]
            days[ticket.day] = days.get(ticket.day, 0) + tokens
            oldest = ticket.day - timedelta(days=_KEEP_DAYS)
            if len(days) > _KEEP_DAYS:
                for day in [d for d in days if d < oldest]:
                    del days[day]

    def _regroup(self) -> None:
        groups: dict[str, dict[date, int]] = defaultdict(dict)
        for name, entry in self._policy.identities.items():
            for day, tokens in self._identity_days.get(name, {}).items():
                for group in entry.groups:
                    groups[group][day] = groups[group].get(day, 0) + tokens
        self._group_days = groups
