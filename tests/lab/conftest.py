"""Lab tier: boots real systemd-nspawn machines (root, systemd-container, iproute2, nftables).

Every test under tests/lab is marked ``lab`` by the folder rule in tests/conftest.py, so
``pytest -m lab`` (``make lab``) runs exactly this tier. The lab's network names are
global to the host: these tests refuse to start while another lab is up.
"""

from __future__ import annotations

import os
import shutil

import pytest

from appliance.lab.network import network_owner


@pytest.fixture(scope="session", autouse=True)
def lab_prerequisites() -> None:
    """Skip the tier on machines that cannot run the lab; fail if another lab is up."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    missing = [
        p for p in ("systemd-nspawn", "ip", "nft", "ssh", "debootstrap") if not shutil.which(p)
    ]
    if missing:
        pytest.skip(f"the lab needs {', '.join(missing)} (`make setup` installs them)")
    owner = network_owner()
    if owner is not None:
        pytest.fail(
            f"a lab is already up on this host ({owner}): `appliance lab down --state {owner}`"
        )
