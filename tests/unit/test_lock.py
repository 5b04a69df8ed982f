"""components.lock.json: one format, written atomically, read back strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.components.lock import FileLock, Fips, ImageLock, Lock, read_lock, write_lock
from appliance.errors import BuildError


def image(name: str) -> ImageLock:
    return ImageLock(
        name=name,
        version="1",
        source="github.com/x/y@v1",
        archive=f"{name}.oci.tar",
        digest="sha256:" + "a" * 64,
        image_id="b" * 64,
        size=10,
        fips=Fips(built_for_fips=True, detail="GOFIPS140=v1.0.0"),
    )


def test_round_trip_sorted(tmp_path: Path) -> None:
    path = tmp_path / "components.lock.json"
    lock = Lock(
        bundle="lab",
        bundle_version="2026.11.0",
        images=[image("z"), image("a")],
        files=[
            FileLock(name="m", version="1", source="s", path="build/m", sha256="c" * 64, size=3)
        ],
    )
    write_lock(path, lock)
    raw = json.loads(path.read_text())
    assert [i["name"] for i in raw["images"]] == ["a", "z"]
    assert raw["images"][0]["fips"] == {"built_for_fips": True, "detail": "GOFIPS140=v1.0.0"}
    again = read_lock(path)
    assert again is not None
    assert {i.name for i in again.images} == {"a", "z"}


def test_absent_lock_is_none(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "nope.json") is None


def test_corrupt_lock_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "components.lock.json"
    path.write_text('{"format": 1, "bundle": "lab"')
    with pytest.raises(BuildError, match="is not a valid components lock") as info:
        read_lock(path)
    assert info.value.hint == "delete it and build again"
