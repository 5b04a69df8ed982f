"""Atomic writes: a failure leaves the old file and no temporary behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance._fsutil import atomic_write_bytes, atomic_write_json, input_key, staging_dir


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "lock.json"
    atomic_write_json(target, {"b": 1, "a": 2})
    atomic_write_json(target, {"c": 3})
    assert json.loads(target.read_text()) == {"c": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["lock.json"]


def test_failed_write_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "config"
    atomic_write_bytes(target, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["config"]


def test_staging_dir_publishes_on_success_only(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with staging_dir(final) as stage:
        (stage / "f").write_text("one")
    assert (final / "f").read_text() == "one"

    with pytest.raises(RuntimeError), staging_dir(final) as stage:
        (stage / "f").write_text("two")
        raise RuntimeError("killed half way")
    assert (final / "f").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_input_key_depends_on_every_part() -> None:
    assert input_key("a", [1, 2]) == input_key("a", [1, 2])
    assert input_key("a", [1, 2]) != input_key("a", [2, 1])
    assert len(input_key("x")) == 20
