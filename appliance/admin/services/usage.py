"""Usage per gateway host, identity, model and day: uploads from the access proxies, sums
for people, CSV.

An upload carries ABSOLUTE totals (never deltas) for (gateway, identity, model, day); each
stored counter becomes max(stored, sent), so a repeated or reordered upload changes
nothing. Every upload that changed something leaves one audit record (``usage.rollup``)
with what it added, so the auditor's export carries the usage and verifies.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.services.access_errors import AccessError
from appliance.audit.record import record_event
from appliance.db.models import UsageDaily, utcnow

__all__ = [
    "COUNTERS",
    "MAX_ROWS",
    "REFUSAL_KINDS",
    "UsageRow",
    "UsageSum",
    "ingest",
    "query_usage",
    "usage_csv",
]

#: The counters of a row, besides the refusals.
COUNTERS = ("requests", "prompt_tokens", "completion_tokens", "errors")
#: Refusal kinds a CSV always has a column for (an upload may bring others).
REFUSAL_KINDS = (
    "tokens_per_day",
    "tokens_per_week",
    "tokens_per_month",
    "requests_per_minute",
    "concurrent_requests",
    "key",
    "model",
)
MAX_ROWS = 5000
MAX_NAME = 128
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MAX_COUNT = 2**53


@dataclass(frozen=True)
class UsageRow:
    """One row of an upload: absolute totals for an identity, a model and a day."""

    identity: str
    model: str
    day: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    refused: Mapping[str, int] = field(default_factory=dict)


@dataclass
class UsageSum:
    """Usage summed over gateway hosts for an identity, a model and a day."""

    identity: str
    model: str
    day: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


def ingest(
    db: Session, gateway: str, rows: Sequence[UsageRow], *, client: str = ""
) -> dict[str, object] | None:
    """Store an upload of ``gateway`` (max() of stored and sent per counter) and audit what
    it changed; returns the audit record's details, or None when nothing changed."""
    _check_name("gateway", gateway, allow_empty=False)
    if len(rows) > MAX_ROWS:
        raise AccessError(f"rows: expected at most {MAX_ROWS} per upload, found {len(rows)}")
    merged: dict[tuple[str, str, str], UsageRow] = {}
    for index, row in enumerate(rows):
        _check_row(index, row)
        key = (row.identity, row.model, row.day)
        merged[key] = _max_row(merged[key], row) if key in merged else row
    days = sorted({day for _, _, day in merged})
    stored = {
        (r.identity, r.model, r.day): r
        for r in db.scalars(
            select(UsageDaily).where(UsageDaily.gateway == gateway, UsageDaily.day.in_(days))
        )
    }
    changes: list[dict[str, object]] = []
    now = utcnow()
    for key, sent in sorted(merged.items()):
        row_db = stored.get(key)
        if row_db is None:
            row_db = UsageDaily(
                gateway=gateway,
                identity=sent.identity,
                model=sent.model,
                day=sent.day,
                requests=0,
                prompt_tokens=0,
                completion_tokens=0,
                errors=0,
                refused={},
            )
            db.add(row_db)
        deltas: dict[str, object] = {}
        changed = False
        for name in COUNTERS:
            old, new = getattr(row_db, name) or 0, getattr(sent, name)
            deltas[name] = max(new - old, 0)
            if new > old:
                setattr(row_db, name, new)
                changed = True
        refused = dict(row_db.refused or {})
        refused_deltas: dict[str, int] = {}
        for kind, count in sorted(sent.refused.items()):
            if count > refused.get(kind, 0):
                refused_deltas[kind] = count - refused.get(kind, 0)
                refused[kind] = count
        if refused_deltas:
            row_db.refused = refused  # a new dict: the JSON column sees the change
            changed = True
        if changed:
            row_db.updated_at = now
            changes.append(
                {
                    "identity": sent.identity,
                    "model": sent.model,
                    "day": sent.day,
                    **deltas,
                    "refused": refused_deltas,
                }
            )
    if not changes:
        return None
    details: dict[str, object] = {"rows": changes}
    record_event(
        db,
        actor=f"access:{gateway}",
        action="usage.rollup",
        target=gateway,
        client=client,
        details=details,
    )
    return details


def query_usage(
    db: Session,
    *,
    since: date | None = None,
    until: date | None = None,
    identity: str | None = None,
) -> list[UsageSum]:
    """Rows summed over gateway hosts per (identity, model, day), by day then identity."""
    if since is not None and until is not None and since > until:
        raise AccessError(f"since {since} is after until {until}: expected since <= until")
    query = select(UsageDaily)
    if since is not None:
        query = query.where(UsageDaily.day >= since.isoformat())
    if until is not None:
        query = query.where(UsageDaily.day <= until.isoformat())
    if identity is not None:
        query = query.where(UsageDaily.identity == identity)
    sums: dict[tuple[str, str, str], UsageSum] = {}
    for row in db.scalars(query):
        key = (row.day, row.identity, row.model)
        total = sums.setdefault(key, UsageSum(row.identity, row.model, row.day))
        for name in COUNTERS:
            setattr(total, name, getattr(total, name) + getattr(row, name))
        for kind, count in (row.refused or {}).items():
            total.refused[kind] = total.refused.get(kind, 0) + count
    return [sums[key] for key in sorted(sums)]


def usage_csv(rows: Iterable[UsageSum]) -> str:
    """``rows`` as CSV: the counters, then one column per refusal kind (``refused_KIND``)."""
    rows = list(rows)
    extra = sorted({k for r in rows for k in r.refused} - set(REFUSAL_KINDS))
    kinds = [*REFUSAL_KINDS, *extra]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["day", "identity", "model", *COUNTERS, *(f"refused_{k}" for k in kinds)])
    for r in rows:
        writer.writerow(
            [
                r.day,
                _cell(r.identity),
                _cell(r.model),
                *(getattr(r, name) for name in COUNTERS),
                *(r.refused.get(k, 0) for k in kinds),
            ]
        )
    return out.getvalue()


def _cell(text: str) -> str:
    """A name made safe for spreadsheets: no cell that starts a formula."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _max_row(a: UsageRow, b: UsageRow) -> UsageRow:
    refused = dict(a.refused)
    for kind, count in b.refused.items():
        refused[kind] = max(refused.get(kind, 0), count)
    return UsageRow(
        a.identity,
        a.model,
        a.day,
        requests=max(a.requests, b.requests),
        prompt_tokens=max(a.prompt_tokens, b.prompt_tokens),
        completion_tokens=max(a.completion_tokens, b.completion_tokens),
        errors=max(a.errors, b.errors),
        refused=refused,
    )


def _check_name(what: str, value: str, *, allow_empty: bool) -> None:
    if not isinstance(value, str) or len(value) > MAX_NAME or (not value and not allow_empty):
        raise AccessError(
            f"{what}: expected {'a' if allow_empty else 'a non-empty'} name of at most "
            f"{MAX_NAME} characters, found {value!r:.160}"
        )


def _check_row(index: int, row: UsageRow) -> None:
    where = f"rows[{index}]"
    _check_name(f"{where}.identity", row.identity, allow_empty=True)
    _check_name(f"{where}.model", row.model, allow_empty=True)
    try:
        valid_day = bool(_DAY.match(row.day)) and date.fromisoformat(row.day) is not None
    except ValueError:
        valid_day = False
    if not valid_day:
        raise AccessError(f"{where}.day: expected a date YYYY-MM-DD, found {row.day!r:.40}")
    for name in COUNTERS:
        _check_count(f"{where}.{name}", getattr(row, name))
    for kind, count in row.refused.items():
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise AccessError(
                f"{where}.refused: expected limit names such as tokens_per_day, found {kind!r:.80}"
            )
        _check_count(f"{where}.refused.{kind}", count)


def _check_count(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise AccessError(
            f"{what}: expected a whole number from 0 to {_MAX_COUNT}, found {value!r:.40}"
        )
