"""Issue 14: `make demo` and then `make test` ended with 27 errors in the lab tier ("a lab
is already up on this host"). Labs are named now, each with its own state, number,
names, addresses and firewall table: a second lab comes up beside a running one, both
answer SSH, neither reaches the other, and taking one down leaves the other intact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import LabError
from appliance.lab import down, labs_on_host, status, up
from tests.lab.conftest import SECOND_LAB, TEST_LAB
from tests.lab.support import (
    appliance,
    assert_lab_intact,
    assert_nothing_of_the_lab_left,
    ssh,
)

HOSTS = ("ctrl1", "gw1", "gpu1")


def test_issue14_a_second_named_lab_comes_up_beside_the_first(tmp_path: Path) -> None:
    first_state, second_state = tmp_path / "first", tmp_path / "second"
    first = up(HOSTS, first_state, name=TEST_LAB)
    try:
        came = appliance("lab", "up", SECOND_LAB, "--state", str(second_state), timeout=600)
        assert came.returncode == 0, came.stdout + came.stderr
        second = status(name=SECOND_LAB)
        assert second.state == second_state
        a, b = first.plan, second.plan
        assert a.slot != b.slot
        assert a.slot.site_network != b.slot.site_network
        assert_lab_intact(first_state, a)
        assert_lab_intact(second_state, b)
        assert status(name=TEST_LAB).ok
        assert second.ok
        listed = appliance("lab", "list", timeout=60)
        assert TEST_LAB in listed.stdout
        assert SECOND_LAB in listed.stdout

        # Neither lab reaches the other, even with a route through its workstation.
        targets = [b.machine("ctrl1").site_address, b.slot.installer_address]
        probe = "; ".join(f"ping -c 1 -W 2 {t} >/dev/null && echo reached {t}" for t in targets)
        done = ssh(
            first_state,
            a.machine("gpu1").site_address,
            f"ip route add default via {a.slot.installer_address} && {{ {probe}; }}; "
            "ip route del default",
        )
        assert "reached" not in done.stdout, done.stdout

        # A third lab may not take a name that is up.
        with pytest.raises(LabError, match=f"another lab named {TEST_LAB}"):
            up(HOSTS, tmp_path / "third", name=TEST_LAB)
        assert not (tmp_path / "third").exists()

        before = labs_on_host()[a.slot.index].machines
        gone = appliance("lab", "down", SECOND_LAB, timeout=300)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert_nothing_of_the_lab_left(second_state, b.slot)
        # The first lab is exactly as it was: same machines, same pieces, still answering.
        assert labs_on_host()[a.slot.index].machines == before
        assert_lab_intact(first_state, a)
        assert status(name=TEST_LAB).ok
    finally:
        down(second_state)
        down(first_state)
    assert_nothing_of_the_lab_left(first_state, a.slot)
