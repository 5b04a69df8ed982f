"""What each fault of the soak test cost the site's users, from what the load recorded.

Pure: the lab test (tests/lab/test_soak_lab.py) collects the records and the fault
spans; these functions turn them into one row per fault and the printed table, and are
unit-tested on made-up records (tests/unit/test_soak_table.py).

Terms, as the table uses them:
- a request is *touched* by a fault when it was running at any moment from the fault's
  start to the end of its watch (``FaultSpan.until``);
- *in flight* means it had started before the fault and had not ended;
- *recovery* is from the moment the broken piece is back (``FaultSpan.back``: the process
  restarted, the host answering, the partition lifted) to the start of the first request
  begun after it that succeeded; clients retry every 0.5 s after a failure and a stream
  takes a second or two, so the figure is good to about a second.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AdminOp",
    "FaultRow",
    "FaultSpan",
    "Request",
    "measure",
    "read_requests",
    "table",
]


@dataclass(frozen=True)
class Request:
    """One streamed completion, as tests/lab/soak_load.py wrote it."""

    client: str
    t0: float
    t_end: float
    outcome: str
    clear: bool = False
    detail: str = ""


@dataclass(frozen=True)
class AdminOp:
    """One admin API call the soak's admin made: what, when and how it ended."""

    #: The audit action the call records when it is done (identity.create, …).
    action: str
    target: str
    t0: float
    t_end: float
    #: HTTP status; None when the admin service did not answer at all.
    status: int | None
    #: For a failure: its body was JSON with a message (not HTML, not a traceback).
    clear: bool = True
    #: The answer's body (or, with no answer, why).
    answer: object = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class FaultSpan:
    """When a fault was made, when the broken piece was back, and how long it was watched."""

    name: str
    start: float
    back: float
    until: float


@dataclass
class FaultRow:
    """What one fault cost, for the table."""

    name: str
    requests: int
    failed: int
    cut: int
    closed: int
    hangs: int
    unclear: int
    #: Seconds from the fault to the last in-flight request's failure (None: none failed).
    inflight_failed_within: float | None
    #: Seconds from back to the first new request that succeeded (None: none did).
    recovery: float | None
    admin_ops: int
    admin_failed: int
    #: Failed calls with no answer at all (the service was down), and with an answer
    #: that did not say what went wrong.
    admin_unanswered: int
    admin_unclear: int
    #: Set by the test after the fault: new listeners on the LAN, packets refused outbound.
    new_listeners: list[str] = field(default_factory=list)
    outbound: int = 0
    #: A line from `appliance status` or the audit log naming what happened.
    seen_as: str = ""


def read_requests(client: str, path: Path) -> list[Request]:
    """The records one client's load wrote (a torn last line, from a kill, is skipped)."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        found.append(
            Request(
                client,
                float(raw["t0"]),
                float(raw["t_end"]),
                str(raw["outcome"]),
                bool(raw.get("clear", False)),
                str(raw.get("detail", "")),
            )
        )
    return found


def measure(span: FaultSpan, requests: Iterable[Request], ops: Iterable[AdminOp]) -> FaultRow:
    """The row of ``span``: its requests and admin calls counted as the module says."""
    every = sorted(requests, key=lambda r: r.t0)
    touched = [r for r in every if r.t_end >= span.start and r.t0 <= span.until]
    failed = [r for r in touched if r.outcome != "ok"]
    in_flight = [r for r in failed if r.t0 < span.start]
    first_ok = next((r for r in every if r.t0 >= span.back and r.outcome == "ok"), None)
    calls = [o for o in ops if o.t_end >= span.start and o.t0 <= span.until]
    return FaultRow(
        name=span.name,
        requests=len(touched),
        failed=len(failed),
        cut=sum(r.outcome == "cut" for r in failed),
        closed=sum(r.outcome == "dropped" for r in failed),
        hangs=sum(r.outcome == "hang" for r in failed),
        unclear=sum(not r.clear for r in failed),
        inflight_failed_within=max((r.t_end - span.start for r in in_flight), default=None),
        recovery=max(0.0, first_ok.t0 - span.back) if first_ok else None,
        admin_ops=len(calls),
        admin_failed=sum(not o.ok for o in calls),
        admin_unanswered=sum(o.status is None for o in calls),
        admin_unclear=sum(o.status is not None and not o.ok and not o.clear for o in calls),
    )


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f} s"


def table(rows: Sequence[FaultRow]) -> str:
    """The rows as a Markdown table, one line per fault."""
    lines = [
        "| fault | requests | failed | streams cut | closed, no answer | no clear error | "
        "hangs | in flight failed within | recovery after back | admin calls failed "
        "(no answer, unclear) | new LAN listeners | packets refused outbound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.requests} | {row.failed} | {row.cut} | {row.closed} | "
            f"{row.unclear} | {row.hangs} | {_seconds(row.inflight_failed_within)} | "
            f"{_seconds(row.recovery)} | {row.admin_failed} of {row.admin_ops} "
            f"({row.admin_unanswered}, {row.admin_unclear}) | {len(row.new_listeners)} | "
            f"{row.outbound} |"
        )
    return "\n".join(lines)
