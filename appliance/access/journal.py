"""The gateway host's usage journal: what the proxy counted, kept until handed over.

SQLite in WAL mode, one row per identity, model and local day with absolute counters and
the sequence number of its last change. Each request's count is committed before its
response ends, so a proxy killed -9 loses nothing it counted (WAL commits survive the
process; ``synchronous=NORMAL`` risks only the last commits on power loss, not on a
crash). Upload sends the rows changed since the last acknowledged sequence number with
their absolute values, so a repeated upload is harmless and nothing is counted twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

__all__ = ["UsageJournal", "UsageRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    identity TEXT NOT NULL,
    model TEXT NOT NULL,
    day TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    refused TEXT NOT NULL DEFAULT '{}',
    seq INTEGER NOT NULL,
    PRIMARY KEY (identity, model, day)
);
CREATE INDEX IF NOT EXISTS usage_seq ON usage (seq);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class UsageRow:
    """Absolute counters of one identity, model and day."""

    identity: str
    model: str
    day: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: int
    refused: dict[str, int] = field(default_factory=dict)

    def as_upload(self) -> dict[str, object]:
        """The row as the admin service's usage upload takes it."""
        return {
            "identity": self.identity,
            "model": self.model,
            "day": self.day,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "errors": self.errors,
            "refused": dict(self.refused),
        }


class UsageJournal:
    """The journal in ``path`` (made on first open, 0600 by the folder's permissions)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM usage").fetchone()
        self._seq = int(row[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def count(
        self,
        identity: str,
        model: str,
        day: date,
        *,
        requests: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        errors: int = 0,
        refused: str | None = None,
    ) -> None:
        """Add to the counters of (identity, model, day); committed when this returns."""
        self._seq += 1
        key = (identity, model, day.isoformat())
        self._db.execute("BEGIN IMMEDIATE")
        try:
            found = self._db.execute(
                "SELECT refused FROM usage WHERE identity=? AND model=? AND day=?", key
            ).fetchone()
            counts: dict[str, int] = json.loads(found[0]) if found else {}
            if refused is not None:
                counts[refused] = counts.get(refused, 0) + 1
            self._db.execute(
                "INSERT INTO usage (identity, model, day, requests, prompt_tokens,"
                " completion_tokens, errors, refused, seq) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (identity, model, day) DO UPDATE SET"
                " requests = requests + excluded.requests,"
                " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
                " completion_tokens = completion_tokens + excluded.completion_tokens,"
                " errors = errors + excluded.errors,"
                " refused = excluded.refused, seq = excluded.seq",
                (
                    *key,
                    requests,
                    prompt_tokens,
                    completion_tokens,
                    errors,
                    json.dumps(counts, sort_keys=True),
                    self._seq,
                ),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def tokens_since(self, first_day: date) -> Iterator[tuple[str, date, int]]:
        """(identity, day, prompt + completion tokens) from ``first_day`` on: for budgets."""
        for identity, day, tokens in self._db.execute(
            "SELECT identity, day, SUM(prompt_tokens + completion_tokens) FROM usage"
            " WHERE day >= ? GROUP BY identity, day",
            (first_day.isoformat(),),
        ):
            yield identity, date.fromisoformat(day), int(tokens)

    def pending(self, limit: int = 5000) -> tuple[list[UsageRow], int]:
        """Rows changed since the last acknowledged upload, and the newest sequence number
        among them (0 when none)."""
        acked = self.acknowledged()
        rows = self._db.execute(
            "SELECT identity, model, day, requests, prompt_tokens, completion_tokens, errors,"
            " refused, seq FROM usage WHERE seq > ? ORDER BY seq LIMIT ?",
            (acked, limit),
        ).fetchall()
        found = [_row(r) for r in rows]
        return found, int(rows[-1][8]) if rows else 0

    def acknowledge(self, seq: int) -> None:
        """The admin service holds every change up to ``seq``."""
        self._db.execute(
            "INSERT INTO meta (name, value) VALUES ('acknowledged', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
            (seq,),
        )

    def acknowledged(self) -> int:
        """The newest sequence number the admin service acknowledged."""
        row = self._db.execute("SELECT value FROM meta WHERE name='acknowledged'").fetchone()
        return int(row[0]) if row else 0

    def rows(self) -> list[UsageRow]:
        """Every row (for tests and the status line)."""
        return [
            _row(r)
            for r in self._db.execute(
                "SELECT identity, model, day, requests, prompt_tokens, completion_tokens,"
                " errors, refused FROM usage ORDER BY day, identity, model"
            )
        ]


def _row(found: tuple[object, ...]) -> UsageRow:
    identity, model, day, requests, prompt, completion, errors, refused = found[:8]
    return UsageRow(
        str(identity),
        str(model),
        str(day),
        int(str(requests)),
        int(str(prompt)),
        int(str(completion)),
        int(str(errors)),
        json.loads(str(refused)),
    )
