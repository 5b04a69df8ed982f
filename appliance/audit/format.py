"""The one place that defines an audit record and how it is hashed.

A record's hash is SHA-256 over its canonical bytes: the UTF-8 of a JSON object with
sorted keys and no whitespace, holding every field below (``prev_hash`` included), the
time in UTC with microseconds. Records chain: each holds the hash of the one before;
record 1 holds GENESIS. Anyone can recompute a hash from an export with nothing but a
JSON library and SHA-256 (docs/audit.md shows how by hand).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["FORMAT", "GENESIS", "Record", "canonical_bytes", "record_hash", "timestamp"]

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
