"""Issue 15: the fast encoder never changes what a record is. orjson writes export lines
and checks hashes only where it agrees with the definition (json.dumps)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from appliance.audit.format import GENESIS, Record, hash_matches, json_line, record_hash


def record(details: dict[str, object]) -> Record:
    plain = Record(
        1, "2026-11-22T10:15:00.000000+00:00", "alice", "t.x", "", "ok", "", details, GENESIS
    )
    return dataclasses.replace(plain, hash=record_hash(plain))


def test_fields_are_every_field_but_the_hash() -> None:
    names = {f.name for f in dataclasses.fields(Record)} - {"hash"}
    assert set(record({}).fields()) == names


@pytest.mark.parametrize(
    "details",
    [
        {"n": 1, "note": "ünïcode \u2028 \x1f \x7f", "nested": {"b": [1, None, True]}},
        {"big": 2**70},  # beyond orjson: the definition decides
        {"ratio": 0.1, "tiny": 1e-7, "huge": 1e22},  # float text differs between encoders
        {"inf": math.inf, "nan": math.nan},  # orjson would write null
    ],
    ids=["text", "big integer", "floats", "non-finite"],
)
def test_lines_read_back_as_the_record_and_its_hash_matches(details: dict[str, object]) -> None:
    original = record(details)
    row = json.loads(json_line({**original.fields(), "hash": original.hash}))
    back = Record(**row)
    assert hash_matches(back)
    assert not hash_matches(dataclasses.replace(back, actor="mallory"))
