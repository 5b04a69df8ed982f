"""A lab whose `up` died midway is refused by `up`, reported by `status`, removed by `down`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import LabError
from appliance.lab import down, status, up
from appliance.lab.labs import free_slot, labs_on_host
from appliance.lab.machines import find_machine_processes, wait_until
from appliance.lab.state import LabRecord, StateLayout, read_record, write_record
from tests.lab.conftest import TEST_LAB
from tests.lab.support import REPO, appliance, assert_nothing_of_the_lab_left


def test_down_after_up_stopped_at_the_namespaces(tmp_path: Path) -> None:
    state = tmp_path / "state"
    layout = StateLayout(state)
    state.mkdir()
    slot = free_slot(labs_on_host(), TEST_LAB)
    # What `up` writes first, then a namespace and a bridge without its tag yet.
    write_record(layout, LabRecord(hosts=("ctrl1", "gw1"), name=TEST_LAB, index=slot.index))
    subprocess.run(["ip", "netns", "add", f"{slot.prefix}ctrl1"], check=True)
    subprocess.run(["ip", "link", "add", slot.site_bridge, "type", "bridge"], check=True)
    try:
        with pytest.raises(LabError, match="half made") as info:
            up(["ctrl1", "gw1"], state, name=TEST_LAB)
        assert "appliance lab down" in str(info.value.hint)
        assert not status(state).ok
    finally:
        report = down(state)
    assert report.network.namespaces == (f"{slot.prefix}ctrl1",)
    assert report.network.links == (slot.site_bridge,)
    assert_nothing_of_the_lab_left(state, slot)


def test_down_after_up_killed_while_machines_boot(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "lab",
            "up",
            TEST_LAB,
            "--hosts",
            "ctrl1,gpu1",
            "--state",
            str(state),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def machines() -> dict[int, str]:
            made = read_record(StateLayout(state)) if (state / "lab.json").exists() else None
            return find_machine_processes(prefix=made.plan.slot.prefix) if made else {}

        started = wait_until(lambda: len(machines()) == 2 or proc.poll() is not None, timeout=600)
        assert started and proc.poll() is None, "lab up ended before its machines started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        record = read_record(StateLayout(state))
        assert record is not None
        assert json.loads((state / "lab.json").read_text())["status"] == "making"
        refused = appliance("lab", "up", "--hosts", "ctrl1,gpu1", "--state", str(state))
        assert refused.returncode == 1
        assert "half made" in refused.stderr and "lab down" in refused.stderr
        assert appliance("lab", "status", "--state", str(state)).returncode == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        done = appliance("lab", "down", "--state", str(state))
    assert done.returncode == 0, done.stderr
    assert "stopped ctrl1, gpu1" in done.stdout
    assert_nothing_of_the_lab_left(state, record.plan.slot)


def test_down_of_an_absent_lab(tmp_path: Path) -> None:
    done = appliance("lab", "down", "--state", str(tmp_path / "never"))
    assert done.returncode == 0, done.stderr
    assert "nothing to remove" in done.stdout
    assert not (tmp_path / "never").exists()


def test_down_never_deletes_a_directory_that_is_not_a_lab(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = appliance("lab", "down", "--state", str(tmp_path))
    assert done.returncode == 1
    assert "not the lab's" in done.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
