"""Lab tier: boots real systemd-nspawn machines (root, systemd-container, iproute2, nftables).

Every test under tests/lab is marked ``lab`` by the folder rule in tests/conftest.py, so
``pytest -m lab`` (``make lab``) runs exactly this tier. Its labs are named ``test`` and
``test2``: they come up beside any other lab on the host (the demo's ``default`` lab
included) and never touch it. A ``test`` lab left by an interrupted run fails the tier
with the command that removes it.
"""

from __future__ import annotations

import os
import shutil

import pytest

from appliance.lab.labs import find_lab, labs_on_host

#: The names of the labs this tier brings up (one at a time, or both side by side).
TEST_LAB = "test"
SECOND_LAB = "test2"


@pytest.fixture(scope="session", autouse=True)
def lab_prerequisites() -> None:
    """Skip the tier on machines that cannot run the lab; fail if a test lab is left over."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    missing = [
        p for p in ("systemd-nspawn", "ip", "nft", "ssh", "debootstrap") if not shutil.which(p)
    ]
    if missing:
        pytest.skip(f"the lab needs {', '.join(missing)} (`make setup` installs them)")
    on_host = labs_on_host()
    for name in (TEST_LAB, SECOND_LAB):
        left = find_lab(on_host, name)
        if left is not None and left.owner is not None:
            pytest.fail(
                f"a lab named {name} is already up on this host (state {left.owner.state}), "
                f"left by an earlier test run or running for another: "
                f"`appliance lab down {name}`"
            )
