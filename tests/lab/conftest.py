"""Lab tier: boots real systemd-nspawn machines (root, systemd-container, iproute2, nftables).

Every test under tests/lab is marked ``lab`` by the folder rule in tests/conftest.py, so
``pytest -m lab`` (``make lab``) runs exactly this tier. Its labs are named ``test`` and
``test2``: they come up beside any other lab on the host (the demo's ``default`` lab
included) and never touch it. One run of the tier at a time holds a lock on the host; a
``test`` lab found while no run holds it was left by a run that was killed, so the tier
takes it down (and says so) rather than failing every test on it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from appliance.lab.labs import find_lab, labs_on_host
from appliance.lab.locate import LOCK_DIR
from appliance.lab.teardown import down

#: The names of the labs this tier brings up (one at a time, or both side by side).
TEST_LAB = "test"
SECOND_LAB = "test2"


@pytest.fixture(scope="session", autouse=True)
def lab_prerequisites() -> Iterator[None]:
    """Skip the tier on machines that cannot run the lab; clear test labs a killed run left."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    missing = [
        p for p in ("systemd-nspawn", "ip", "nft", "ssh", "debootstrap") if not shutil.which(p)
    ]
    if missing:
        pytest.skip(f"the lab needs {', '.join(missing)} (`make setup` installs them)")
    with _tier_lock():
        _remove_left_over_labs()
        yield


@contextmanager
def _tier_lock() -> Iterator[None]:
    """Hold the host's lab-tier lock for the run; fail at once if another run holds it.

    flock is released by the kernel when its holder dies, so a run that was killed never
    leaves the lock behind: only a live run can hold it.
    """
    path = LOCK_DIR / "test-tier.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            pytest.fail(
                f"another run of the lab tier ({holder}) is running on this host: "
                "its labs are named test and test2 too; wait for it to end"
            )
        handle.truncate(0)
        handle.write(f"pytest pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_left_over_labs() -> None:
    """Take down every test lab on the host: with the tier lock ours, none is in use."""
    on_host = labs_on_host()
    for name in (TEST_LAB, SECOND_LAB):
        left = find_lab(on_host, name)
        if left is None or left.owner is None:
            continue
        report = down(name=name)
        warnings.warn(
            f"took down lab {name} left by an earlier, killed run "
            f"(state {left.owner.state}; stopped {', '.join(report.stopped) or 'no machine'})",
            stacklevel=1,
        )
