"""Which labs are on this host: each one's number, owner (name and state) and pieces.

Several labs live side by side, so ``up`` must know which numbers are taken and whether
a lab of the same name is already there, and ``down`` must know whose lab number k is
before it touches anything. This module answers from the host alone: network pieces
(namespaces, links, firewall tables, the owner tag on each site bridge) and nspawn
processes. A number is taken while any piece of it is on the host, tagged or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import LabError
from appliance.lab.host import Runner, host_runner
from appliance.lab.machines import find_machine_processes
from appliance.lab.network import LabOwner, NetworkState, scan_network
from appliance.lab.plan import DEFAULT_LAB, MAX_LABS, Slot, index_of_link

__all__ = ["LabOnHost", "find_lab", "free_slot", "labs_on_host"]


@dataclass(frozen=True)
class LabOnHost:
    """What of lab number ``slot`` is on the host, and who made it."""

    slot: Slot
    #: From the site bridge's tag; None when there is no bridge or it has no tag of ours.
    owner: LabOwner | None
    network: NetworkState = field(default_factory=NetworkState)
    #: Its running nspawn machines: pid → namespace.
    machines: dict[int, str] = field(default_factory=dict)

    @property
    def pieces(self) -> tuple[str, ...]:
        """Everything of it on the host, in words, for messages."""
        return (*self.network.pieces, *(f"nspawn pid {pid}" for pid in sorted(self.machines)))

    def describe(self) -> str:
        """Whose lab this is, for messages."""
        made = self.owner.describe() if self.owner else "no lab's tag"
        return f"lab number {self.slot.index} ({made})"


def labs_on_host(run: Runner = host_runner, proc: Path = Path("/proc")) -> dict[int, LabOnHost]:
    """Every lab number with anything on the host, in order."""
    network = scan_network(run)
    machines: dict[int, dict[int, str]] = {}
    for pid, namespace in find_machine_processes(proc).items():
        index = index_of_link(namespace)
        if index is not None:
            machines.setdefault(index, {})[pid] = namespace
    return {
        index: LabOnHost(
            Slot(index),
            network.owner(Slot(index)),
            network.of(Slot(index)),
            machines.get(index, {}),
        )
        for index in sorted({*network.labs, *machines})
    }


def find_lab(labs: dict[int, LabOnHost], name: str) -> LabOnHost | None:
    """The lab whose site bridge is tagged with ``name``, if one is on the host."""
    for lab in labs.values():
        if lab.owner is not None and lab.owner.name == name:
            return lab
    return None


def free_slot(labs: dict[int, LabOnHost], name: str) -> Slot:
    """The number lab ``name`` takes: 0 for the default lab, else the lowest one free.

    LabError when every number is taken (naming who holds them).
    """
    if name == DEFAULT_LAB:
        return Slot(0)
    for index in range(1, MAX_LABS):
        if index not in labs:
            return Slot(index)
    taken = "; ".join(lab.describe() for lab in labs.values())
    raise LabError(
        f"no lab number is free for lab {name}: expected one of 1 to {MAX_LABS - 1} free, "
        f"found all taken ({taken})",
        hint="take a lab down (`appliance lab list` shows them, `appliance lab down NAME`)",
    )
