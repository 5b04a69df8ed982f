"""The soak test's arithmetic (tests/lab/soak.py): which requests a fault touched, how
fast the site recovered, and the table, on made-up records."""

from __future__ import annotations

import json
from pathlib import Path

from tests.lab.soak import AdminOp, FaultSpan, Request, measure, read_requests, table

SPAN = FaultSpan("router killed -9", start=100.0, back=106.0, until=120.0)


def _req(t0: float, t_end: float, outcome: str = "ok", clear: bool = False) -> Request:
    return Request("user0", t0, t_end, outcome, clear)


def test_only_requests_running_during_the_watch_are_counted() -> None:
    row = measure(
        SPAN,
        [
            _req(90, 95),  # before: not touched
            _req(98, 101.5, "cut"),  # in flight when the fault came: cut 1.5 s later
            _req(102, 102.1, "dropped"),  # refused by the client's proxy, no answer
            _req(104, 104.2, "refused", clear=True),  # an HTTP error in OpenAI's shape
            _req(107.5, 109),  # the first success after the router was back
            _req(121, 122),  # after the watch: not touched
        ],
        [],
    )
    assert (row.requests, row.failed, row.cut, row.closed, row.hangs) == (4, 3, 1, 1, 0)
    assert row.unclear == 2  # the cut without an error event, and the dropped one
    assert row.inflight_failed_within == 1.5
    assert row.recovery == 1.5


def test_no_success_after_back_is_no_recovery_and_none_in_flight_is_none() -> None:
    row = measure(SPAN, [_req(101, 101.2, "hang"), _req(108, 138, "hang")], [])
    assert row.recovery is None and row.inflight_failed_within is None
    assert row.hangs == 2
    assert "| none | none |" in table([row])


def test_admin_calls_without_an_answer_are_told_apart_from_unclear_answers() -> None:
    ops = [
        AdminOp("identity.create", "a", 99, 101, None, False, "connection refused"),
        AdminOp("identity.create", "b", 103, 104, 503, True, {"detail": "controller down"}),
        AdminOp("identity.create", "c", 105, 105.5, 500, False, "<html>"),
        AdminOp("identity.create", "d", 110, 111, 201, True, {}),
        AdminOp("identity.create", "e", 130, 131, 201, True, {}),  # after the watch
    ]
    row = measure(SPAN, [], ops)
    assert (row.admin_ops, row.admin_failed, row.admin_unanswered, row.admin_unclear) == (
        4,
        3,
        1,
        1,
    )
    assert "| 3 of 4 (1, 1) |" in table([row])


def test_a_torn_last_line_from_a_killed_client_is_skipped(tmp_path: Path) -> None:
    out = tmp_path / "user0.jsonl"
    whole = {"t0": 1.0, "t_end": 2.0, "outcome": "ok"}
    out.write_text(json.dumps(whole) + "\n" + '{"t0": 3.0, "t_e')
    assert read_requests("user0", out) == [Request("user0", 1.0, 2.0, "ok")]
