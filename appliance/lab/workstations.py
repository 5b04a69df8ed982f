"""More workstations on a lab's site LAN: one network namespace each, plugged into the site
bridge with a site address, as a site's users sit at machines of their own.

A client's ``ziti tunnel proxy`` listens where its service's proxy.v1 config says
(127.0.0.1 and one port), so two clients on one workstation would want the same port;
a namespace each gives each client its own loopback. Their names carry the lab's prefix,
so ``lab down`` removes them with the rest of the lab's network.

Addresses: 10.231.(2k).(240 + n) for workstation n (0 to 9), above the machines' range.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from appliance.errors import LabError
from appliance.lab.plan import PREFIX_LENGTH, LabPlan

__all__ = ["MAX_WORKSTATIONS", "Workstation", "workstations"]

MAX_WORKSTATIONS = 10
_FIRST = 240


@dataclass(frozen=True)
class Workstation:
    """One more workstation: its namespace and its address on the site LAN."""

    namespace: str
    address: str

    def argv(self, *command: str) -> list[str]:
        """``command`` as run on this workstation."""
        return ["ip", "netns", "exec", self.namespace, *command]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(
            f"`ip {' '.join(args)}` failed: {done.stderr.strip()}",
            hint="`appliance lab down NAME` removes a lab's workstations with its network",
        )


@contextmanager
def workstations(plan: LabPlan, count: int) -> Iterator[list[Workstation]]:
    """``count`` workstations on ``plan``'s site LAN for the block; removed after."""
    if not 0 < count <= MAX_WORKSTATIONS:
        raise LabError(f"{count} workstations: expected 1 to {MAX_WORKSTATIONS}")
    slot = plan.slot
    base = slot.installer_address.rsplit(".", 1)[0]
    made: list[Workstation] = []
    try:
        for number in range(count):
            station = Workstation(f"{slot.prefix}ws{number}", f"{base}.{_FIRST + number}")
            veth = f"{slot.prefix}ws{number}v"
            subprocess.run(["ip", "netns", "delete", station.namespace], capture_output=True)
            _ip("netns", "add", station.namespace)
            made.append(station)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
                station.namespace)  # fmt: skip
            _ip("link", "set", veth, "master", slot.site_bridge, "up")
            _ip("-n", station.namespace, "address", "add", f"{station.address}/{PREFIX_LENGTH}",
                "dev", "eth0")  # fmt: skip
            _ip("-n", station.namespace, "link", "set", "eth0", "up")
            _ip("-n", station.namespace, "link", "set", "lo", "up")
        yield made
    finally:
        # Deleting the namespace deletes its veth end, and with it the peer on the bridge.
        for station in made:
            subprocess.run(["ip", "netns", "delete", station.namespace], capture_output=True)
