"""`lab reboot HOST`: the machine is stopped cleanly and booted again, its new pid recorded;
a lab that is not up or a host it does not have is a clear error, and nothing is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import LabError
from appliance.lab import Machine, reboot
from appliance.lab import lab as lab_module
from appliance.lab.state import LabRecord, StateLayout, read_record, write_record


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    made: list[str] = []
    monkeypatch.setattr(lab_module, "lab_lock", lambda name: tmp_path / f"{name}.lock")
    nspawn = lab_module.nspawn
    monkeypatch.setattr(nspawn, "is_machine_process", lambda pid, machine: pid == 41)
    monkeypatch.setattr(
        nspawn, "stop_processes", lambda pids, *, timeout: made.append(f"stop {pids}") or []
    )

    def start(machine: Machine, root: Path, log: Path) -> int:
        made.append(f"start {machine.name}")
        return 42

    monkeypatch.setattr(nspawn, "start_machine", start)
    monkeypatch.setattr(
        lab_module, "_wait_for_ssh", lambda lab, name, plan, record, timeout: made.append("ssh")
    )
    return made


def _lab(state: Path, status: str = "up") -> StateLayout:
    layout = StateLayout(state)
    write_record(
        layout,
        LabRecord(hosts=("ctrl1", "gw1"), name="test", index=1, status=status, pids={"gw1": 41}),
    )
    return layout


def test_the_machine_is_stopped_booted_and_its_new_pid_kept(
    tmp_path: Path, calls: list[str]
) -> None:
    layout = _lab(tmp_path / "lab")
    reboot("gw1", layout.root, name="test")
    assert calls == ["stop [41]", "start gw1", "ssh"]
    record = read_record(layout)
    assert record is not None and record.pids["gw1"] == 42


def test_a_host_the_lab_lacks_or_a_lab_not_up_is_refused_untouched(
    tmp_path: Path, calls: list[str]
) -> None:
    layout = _lab(tmp_path / "lab")
    with pytest.raises(LabError, match="no machine gpu9: expected one of ctrl1, gw1"):
        reboot("gpu9", layout.root, name="test")
    half = _lab(tmp_path / "half", status="making")
    with pytest.raises(LabError, match="is not up"):
        reboot("gw1", half.root, name="test")
    assert calls == []
