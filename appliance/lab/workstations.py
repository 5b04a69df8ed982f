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
from appliance.lab.network import add_site_host
from appliance.lab.plan import LabPlan

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
            subprocess.run(["ip", "netns", "delete", station.namespace], capture_output=True)
            made.append(station)
            add_site_host(
                station.namespace, f"{slot.prefix}ws{number}v", slot.site_bridge, station.address
            )
        yield made
    finally:
        # Deleting the namespace deletes its veth end, and with it the peer on the bridge.
        for station in made:
            subprocess.run(["ip", "netns", "delete", station.namespace], capture_output=True)
