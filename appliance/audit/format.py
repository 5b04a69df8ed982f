"""The one place that defines an audit record and how it is hashed.

A record's hash is SHA-256 over its canonical bytes: the UTF-8 of a JSON object with
sorted keys and no whitespace, holding every field below (``prev_hash`` included), the
time in UTC with microseconds. Records chain: each holds the hash of the one before;
record 1 holds GENESIS. Anyone can recompute a hash from an export with nothing but a
JSON library and SHA-256 (docs/audit.md shows how by hand).

The definition is the standard library's ``json.dumps`` (``canonical_bytes``). Exports and
their verification use orjson where it gives the same bytes, for speed (ADR 0010): a line
is written with the standard library whenever orjson could differ (a non-finite float), and
a hash orjson's bytes do not match is recomputed by the definition before anything is
called altered.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "FORMAT",
    "GENESIS",
    "Record",
    "canonical_bytes",
    "hash_matches",
    "json_line",
    "record_hash",
    "timestamp",
]

FORMAT = "appliance-audit-record/1"
GENESIS = "0" * 64


@dataclass(frozen=True)
class Record:
    """One audit record as it is hashed and exported."""

    seq: int
    at: str  # ISO 8601, UTC, microseconds: 2026-11-22T10:15:00.000000+00:00
    actor: str
    action: str
    target: str
    outcome: str
    client: str
    details: dict[str, Any]
    prev_hash: str
    hash: str = ""

    def fields(self) -> dict[str, Any]:
        """Everything that is hashed (all but ``hash``)."""
        # Spelled out: dataclasses.asdict deep-copies, and that was most of an append's cost.
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "client": self.client,
            "details": self.details,
            "prev_hash": self.prev_hash,
        }


def timestamp(moment: datetime) -> str:
    """The canonical text of a time: UTC with microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes a record's hash covers."""
    return json.dumps(
        {"format": FORMAT, **fields}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def record_hash(record: Record) -> str:
    """SHA-256 (hex) of the record's canonical bytes."""
    return hashlib.sha256(canonical_bytes(record.fields())).hexdigest()


def hash_matches(record: Record) -> bool:
    """Whether ``record.hash`` is the hash of the record's content.

    orjson's bytes first: when they hash to ``record.hash`` they are the canonical bytes
    (SHA-256 admits no second preimage), so the content is what was hashed. Otherwise the
    definition decides, so an encoder difference can never make a record look altered.
    """
    fields = {"format": FORMAT, **record.fields()}
    try:
        fast = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # beyond orjson (an integer over 64 bits): the definition decides
        pass
    else:
        if hashlib.sha256(fast).hexdigest() == record.hash:
            return True
    return record_hash(record) == record.hash


def json_line(value: dict[str, Any]) -> bytes:
    """One line of an export's records.jsonl: the record as JSON, sorted keys, UTF-8.

    orjson unless the value holds a non-finite float (orjson writes it as null, which
    would change the record; so a line with a null is looked at again) or what orjson
    cannot encode.
    """
    try:
        line = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        pass
    else:
        if b"null" not in line or _finite(value):
            return line
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True
