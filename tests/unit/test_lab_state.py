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
    assert (data["name"], data["index"]) == ("default", 0)


def test_issue14_record_of_a_named_lab(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    record = LabRecord(hosts=("ctrl1", "gw1"), name="test", index=2, status="removing")
    write_record(layout, record)
    assert read_record(layout) == record
    data = json.loads(layout.record.read_text())
    assert data["bridges"] == {"site": "apl2-site0", "outside": "apl2-ext0"}
    assert data["firewall_table"] == "inet appliance_lab2"
    assert data["machines"]["gw1"]["namespace"] == "apl2-gw1"
    assert data["machines"]["gw1"]["address"] == "10.231.4.11"


def test_record_of_before_labs_had_names_is_the_default_lab(tmp_path: Path) -> None:
    old = {"format": 1, "status": "up", "hosts": ["ctrl1"], "machines": {"ctrl1": {"pid": 7}}}
    (tmp_path / "lab.json").write_text(json.dumps(old))
    assert read_record(StateLayout(tmp_path)) == LabRecord(
        hosts=("ctrl1",), name="default", index=0, status="up", pids={"ctrl1": 7}
    )


def test_no_record_is_none(tmp_path: Path) -> None:
    assert read_record(StateLayout(tmp_path)) is None


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"format": 99}',
        '{"format": 1, "hosts": "ctrl1"}',
        '{"format": 2, "hosts": ["ctrl1"], "status": "up", "machines": {}, "index": 10}',
        '{"format": 2, "hosts": ["ctrl1"], "status": "gone", "machines": {}}',
    ],
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
