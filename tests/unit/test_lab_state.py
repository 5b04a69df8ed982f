"""lab.json: written whole, read strictly; the state directory holds only the lab's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import LabError
from appliance.lab.state import LabRecord, StateLayout, read_record, write_record


def test_record_round_trip(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    write_record(layout, LabRecord(hosts=("ctrl1", "gw1"), status="up", pids={"ctrl1": 42}))
    read = read_record(layout)
    assert read == LabRecord(hosts=("ctrl1", "gw1"), status="up", pids={"ctrl1": 42})
    data = json.loads(layout.record.read_text())
    assert data["machines"]["gw1"]["outside_address"] == "10.231.1.2"
    assert data["machines"]["gw1"]["pid"] is None
    assert data["bridges"] == {"site": "apl-site0", "outside": "apl-ext0"}


def test_no_record_is_none(tmp_path: Path) -> None:
    assert read_record(StateLayout(tmp_path)) is None


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"format": 99}', '{"format": 1, "hosts": "ctrl1"}'],
)
def test_malformed_record_is_a_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "lab.json").write_text(content)
    with pytest.raises(LabError, match="lab.json is not a lab record"):
        read_record(StateLayout(tmp_path))
    assert (tmp_path / "lab.json").read_text() == content


def test_lab_files() -> None:
    layout = StateLayout(Path("/state"))
    for name in ("lab.json", "machines", "id_ecdsa", "known_hosts", ".lab.json.x1.tmp"):
        assert layout.is_lab_file(name)
    for name in ("notes.txt", ".bashrc", "Documents"):
        assert not layout.is_lab_file(name)
