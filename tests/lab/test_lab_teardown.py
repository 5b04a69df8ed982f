"""Issue 17: a lab-tier run once failed in `lab down` with "`ip link delete apl-s-gpu1`
exited with status 1: Cannot find device". A piece already gone is what `down` wants.
Here pieces are removed out from under a running lab, as happened, and `down` must end
at zero with nothing left; and an `up` after a `down` that was killed midway must work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from appliance.lab import status, up
from appliance.lab.machines import find_machine_processes, wait_until
from appliance.lab.state import REMOVING, StateLayout, read_record
from tests.lab.conftest import TEST_LAB
from tests.lab.support import (
    REPO,
    appliance,
    assert_lab_intact,
    assert_nothing_of_the_lab_left,
)

HOSTS = ("ctrl1", "gw1", "gpu1")


def test_issue17_down_after_pieces_removed_from_a_running_lab(tmp_path: Path) -> None:
    state = tmp_path / "state"
    plan = up(HOSTS, state, name=TEST_LAB).plan
    try:
        machines = {ns: pid for pid, ns in find_machine_processes(prefix=plan.slot.prefix).items()}
        # gpu1's nspawn killed: the machine's own systemd runs on without it.
        os.kill(machines[plan.machine("gpu1").namespace], signal.SIGKILL)
        # gw1's namespace deleted under the running machine; ctrl1's and the vendor's
        # veths deleted (their namespaces keep only their own ends).
        subprocess.run(["ip", "netns", "delete", plan.machine("gw1").namespace], check=True)
        subprocess.run(["ip", "link", "delete", plan.machine("ctrl1").site_veth], check=True)
        subprocess.run(["ip", "link", "delete", plan.vendor.veth], check=True)
        broken = status(state, ssh_timeout=2)
        # gpu1 not running, gw1 without its namespace, ctrl1 unreachable.
        assert {m.name for m in broken.machines if not m.ok} == set(HOSTS)
    finally:
        done = appliance("lab", "down", TEST_LAB, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped ctrl1, gpu1, gw1" in done.stdout  # gpu1: its machine, without nspawn
    assert_nothing_of_the_lab_left(state, plan.slot)
    again = appliance("lab", "down", TEST_LAB, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "nothing to remove" in again.stdout


def test_issue17_up_after_a_down_that_was_killed_midway(tmp_path: Path) -> None:
    state = tmp_path / "state"
    layout = StateLayout(state)
    up(HOSTS, state, name=TEST_LAB)
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "lab", "down", TEST_LAB],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def removing() -> bool:
            record = read_record(layout) if layout.record.exists() else None
            return (record is not None and record.status == REMOVING) or proc.poll() is not None

        assert wait_until(removing, timeout=60, interval=0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        half = read_record(layout)
        assert half is not None, "lab down finished before it could be killed"
        assert half.status == REMOVING
        assert not status(state, ssh_timeout=2).ok
        again = appliance("lab", "up", TEST_LAB, "--state", str(state), timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "finishing the `lab down` of test that was interrupted" in again.stdout
        record = read_record(layout)
        assert record is not None
        assert record.status == "up"
        assert status(state).ok
        assert_lab_intact(state, record.plan)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        done = appliance("lab", "down", TEST_LAB, "--state", str(state), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_nothing_of_the_lab_left(state, record.plan.slot)
