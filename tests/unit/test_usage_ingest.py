"""Usage handed over by the access proxies: absolute totals kept with max(), one audit
record per changing upload; sums, CSV and the page for people; limits over the API."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.services import usage
from appliance.admin.services.access_errors import AccessError
from appliance.admin.web.usage_chart import lay_out
from appliance.db.models import AuditEvent, UsageDaily
from tests.unit.admin_access_site import BEARER, Site

UPLOAD = "/api/v1/access/usage"


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "identity": "alice",
        "model": "tiny",
        "day": "2026-12-06",
        "requests": 3,
        "prompt_tokens": 30,
        "completion_tokens": 48,
        "errors": 0,
        "refused": {"tokens_per_day": 1},
    }
    base.update(values)
    return base


def rollups(db: Session) -> list[AuditEvent]:
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == "usage.rollup")))


def test_the_same_upload_twice_gives_the_same_totals_and_one_record(db: Session) -> None:
    rows = [usage.UsageRow(**row())]
    assert usage.ingest(db, "gw1", rows) is not None
    db.commit()
    assert usage.ingest(db, "gw1", rows) is None
    db.commit()
    (stored,) = db.scalars(select(UsageDaily))
    assert (stored.requests, stored.prompt_tokens, stored.completion_tokens) == (3, 30, 48)
    assert stored.refused == {"tokens_per_day": 1}
    (record,) = rollups(db)
    assert (record.actor, record.target) == ("access:gw1", "gw1")
    assert record.details == {
        "rows": [
            {
                "identity": "alice",
                "model": "tiny",
                "day": "2026-12-06",
                "requests": 3,
                "prompt_tokens": 30,
                "completion_tokens": 48,
                "errors": 0,
                "refused": {"tokens_per_day": 1},
            }
        ]
    }


def test_a_reordered_older_upload_keeps_the_larger_totals(db: Session) -> None:
    newer = usage.UsageRow(**row(requests=5, prompt_tokens=50, completion_tokens=80))
    older = usage.UsageRow(**row())
    usage.ingest(db, "gw1", [newer])
    assert usage.ingest(db, "gw1", [older]) is None  # arrived late: changes nothing
    db.commit()
    (stored,) = db.scalars(select(UsageDaily))
    assert (stored.requests, stored.prompt_tokens, stored.completion_tokens) == (5, 50, 80)
    later = usage.UsageRow(**row(requests=6, prompt_tokens=50, completion_tokens=90, errors=1))
    details = usage.ingest(db, "gw1", [later])
    assert details is not None
    (change,) = details["rows"]  # type: ignore[misc]
    assert (change["requests"], change["completion_tokens"], change["errors"]) == (1, 10, 1)
    assert change["prompt_tokens"] == 0 and change["refused"] == {}
    assert len(rollups(db)) == 2


def test_gateways_are_kept_apart_and_summed_for_people(db: Session) -> None:
    usage.ingest(db, "gw1", [usage.UsageRow(**row())])
    usage.ingest(db, "gw2", [usage.UsageRow(**row(requests=1, prompt_tokens=5))])
    usage.ingest(db, "gw1", [usage.UsageRow(**row(identity="", model="", refused={"key": 4}))])
    usage.ingest(db, "gw1", [usage.UsageRow(**row(identity="bob", day="2026-12-07"))])
    db.commit()
    assert len(db.scalars(select(UsageDaily)).all()) == 4
    (alice,) = usage.query_usage(db, identity="alice")
    assert (alice.requests, alice.prompt_tokens, alice.completion_tokens) == (4, 35, 96)
    assert alice.refused == {"tokens_per_day": 2}
    days = usage.query_usage(db, since=date(2026, 12, 7), until=date(2026, 12, 7))
    assert [(r.identity, r.day) for r in days] == [("bob", "2026-12-07")]
    everyone = usage.query_usage(db)
    assert [r.identity for r in everyone] == ["", "alice", "bob"]
    with pytest.raises(AccessError, match="is after until"):
        usage.query_usage(db, since=date(2026, 12, 8), until=date(2026, 12, 7))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"day": "2026-13-01"}, "expected a date YYYY-MM-DD"),
        ({"day": "06.12.2026"}, "expected a date YYYY-MM-DD"),
        ({"requests": -1}, "expected a whole number"),
        ({"identity": "x" * 129}, "at most 128"),
        ({"refused": {"Bad Kind": 1}}, "expected limit names"),
    ],
)
def test_bad_rows_are_refused_and_nothing_is_stored(
    db: Session, bad: dict[str, Any], message: str
) -> None:
    with pytest.raises(AccessError, match=message):
        usage.ingest(db, "gw1", [usage.UsageRow(**row()), usage.UsageRow(**row(**bad))])
    db.rollback()
    assert db.scalars(select(UsageDaily)).all() == [] and rollups(db) == []


def test_too_many_rows_are_refused(db: Session) -> None:
    rows = [usage.UsageRow(**row(model=f"m{i}")) for i in range(usage.MAX_ROWS + 1)]
    with pytest.raises(AccessError, match="at most 5000 per upload, found 5001"):
        usage.ingest(db, "gw1", rows)


def test_the_csv_has_a_column_per_refusal_kind(db: Session) -> None:
    usage.ingest(db, "gw1", [usage.UsageRow(**row(identity="=cmd()"))])
    text = usage.usage_csv(usage.query_usage(db))
    header, line = list(csv.reader(io.StringIO(text)))
    assert header[:7] == [
        "day",
        "identity",
        "model",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "errors",
    ]
    assert "refused_tokens_per_day" in header and "refused_key" in header
    values = dict(zip(header, line, strict=True))
    assert values["identity"] == "'=cmd()"  # never a formula in a spreadsheet
    assert (values["requests"], values["refused_tokens_per_day"]) == ("3", "1")


def test_the_upload_route_takes_the_bearer_token_only(site: Site) -> None:
    body = {"gateway": "gw1", "rows": [row()]}
    first = site.client.post(UPLOAD, json=body, headers=BEARER)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 1}
    assert site.client.post(UPLOAD, json=body, headers=BEARER).json() == {"accepted": 1}
    assert len(site.audit("usage.rollup")) == 1
    bad = site.client.post(
        UPLOAD, json={"gateway": "gw1", "rows": [row(day="yesterday")]}, headers=BEARER
    )
    assert bad.status_code == 422 and "day" in bad.json()["error"]["message"]
    negative = site.client.post(
        UPLOAD, json={"gateway": "gw1", "rows": [row(refused={"key": -1})]}, headers=BEARER
    )
    assert negative.status_code == 422

    site.login("aud")  # auditors read usage: JSON, CSV and the page
    (summed,) = site.client.get("/api/v1/usage", params={"identity": "alice"}).json()
    assert summed == {
        "identity": "alice",
        "model": "tiny",
        "day": "2026-12-06",
        "requests": 3,
        "prompt_tokens": 30,
        "completion_tokens": 48,
        "errors": 0,
        "refused": {"tokens_per_day": 1},
    }
    exported = site.client.get("/api/v1/usage.csv", params={"since": "2026-12-01"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.text.splitlines()[1].startswith("2026-12-06,alice,tiny,3,30,48,0,1")
    page = site.client.get("/usage", params={"since": "2026-12-01", "until": "2026-12-07"})
    assert page.status_code == 200
    assert 'id="usage-chart"' in page.text and "<rect" in page.text
    assert "/api/v1/usage.csv?since=2026-12-01&amp;until=2026-12-07" in page.text
    assert "<script" not in page.text and "http://" not in page.text.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )


def test_the_usage_page_needs_a_login(site: Site) -> None:
    site.client.cookies.clear()
    answer = site.client.get("/usage", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    assert site.client.get("/api/v1/usage").status_code == 401


def test_the_chart_stacks_prompt_under_completion_per_day() -> None:
    rows = [
        usage.UsageSum("a", "tiny", "2026-12-06", prompt_tokens=30, completion_tokens=50),
        usage.UsageSum("b", "tiny", "2026-12-06", prompt_tokens=10, completion_tokens=10),
        usage.UsageSum("a", "tiny", "2026-12-07", prompt_tokens=5, completion_tokens=0),
    ]
    chart = lay_out(rows)
    assert chart.maximum == 100  # 40 + 60 rounded up to a round number
    first, second = chart.bars
    assert (first.prompt_tokens, first.completion_tokens) == (40, 60)
    assert first.completion_y + first.completion_height == pytest.approx(first.prompt_y)
    assert first.prompt_y + first.prompt_height == pytest.approx(chart.baseline)
    assert first.completion_y == pytest.approx(chart.top)  # the tallest bar fills the chart
    assert second.x > first.x
    assert lay_out([]).bars == []


def test_limits_are_set_replaced_listed_and_deleted_with_audit(site: Site) -> None:
    site.identity("alice")
    admin = site.login("admin1")
    made = site.client.put(
        "/api/v1/limits",
        json={"subject": "@alice", "tokens_per_day": 1000, "requests_per_minute": 60},
        headers=admin,
    )
    assert made.status_code == 200, made.text
    replaced = site.client.put(
        "/api/v1/limits", json={"subject": "@alice", "tokens_per_month": 5}, headers=admin
    ).json()
    assert replaced["id"] == made.json()["id"]
    assert (replaced["tokens_per_day"], replaced["tokens_per_month"]) == (None, 5)
    for body, status, message in (
        ({"subject": "@nobody"}, 404, "no identity named 'nobody'"),
        ({"subject": "team"}, 422, "expected @identity-name or #attribute"),
        ({"subject": "#team", "tokens_per_day": 0}, 422, "tokens_per_day"),
    ):
        answer = site.client.put("/api/v1/limits", json=body, headers=admin)
        assert answer.status_code == status and message in answer.json()["error"]["message"]
    site.client.put("/api/v1/limits", json={"subject": "#team"}, headers=admin)
    assert [x["subject"] for x in site.client.get("/api/v1/limits").json()] == ["#team", "@alice"]
    assert site.client.delete(f"/api/v1/limits/{replaced['id']}", headers=admin).status_code == 204
    assert site.client.delete("/api/v1/limits/999", headers=admin).status_code == 404
    sets = site.audit("limit.set")
    assert [s.target for s in sets] == ["@alice", "@alice", "#team"]
    assert sets[1].details["before"]["tokens_per_day"] == 1000
    assert sets[1].details["after"]["tokens_per_month"] == 5
    assert [d.target for d in site.audit("limit.delete")] == ["@alice"]
    auditor = site.login("aud")
    assert (
        site.client.put("/api/v1/limits", json={"subject": "#x"}, headers=auditor).status_code
        == 403
    )
