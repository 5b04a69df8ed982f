"""``lab down``: stop a lab's machines, remove its network and its state directory.

It works from what is on the host, not only from ``lab.json``, and counts whatever is
already gone as removed: pieces removed out from under a running lab (a machine killed,
a namespace or a link deleted) are the state ``down`` wants, not errors. It fails only
when something is still there after removing it failed, and names it. It marks the
record ``removing`` before touching anything, so an ``up`` after an interrupted ``down``
finishes it (``remove_lab``) and then makes the lab afresh. Other labs are never
touched: a number that now belongs to another lab is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError, LabError
from appliance.lab import machines as nspawn
from appliance.lab.files import locked, remove_tree
from appliance.lab.labs import LabOnHost, labs_on_host
from appliance.lab.locate import (
    LabRef,
    host_lock,
    lab_lock,
    locate,
    read_own_record,
    refuse_foreign_directory,
)
from appliance.lab.network import NetworkState, remove_network
from appliance.lab.plan import DEFAULT_LAB
from appliance.lab.state import REMOVING, LabRecord, default_state_dir, write_record

__all__ = ["DownReport", "down", "remove_lab"]


@dataclass(frozen=True)
class DownReport:
    """What ``down`` removed: what was there when it began."""

    name: str
    state: Path
    stopped: tuple[str, ...]
    killed: tuple[str, ...]
    network: NetworkState
    state_removed: bool
    #: Set when the lab's number now belongs to another lab, whose pieces were not touched.
    left_alone: str | None = None

    @property
    def nothing(self) -> bool:
        """True when there was no lab to remove."""
        return not (self.stopped or not self.network.empty or self.state_removed)


def down(
    state: Path | None = None, *, name: str | None = None, stop_timeout: float = 60
) -> DownReport:
    """Stop lab ``name``'s machines, remove its network, firewall table and state dir.

    ``name`` defaults to the demo's lab (or, with ``state``, to the lab recorded there).
    A lab whose ``up`` was killed at any point is removed too. The cached base root
    filesystem is kept.
    """
    lab = locate(name, state)
    with locked(lab_lock(lab.name)):
        refuse_foreign_directory(lab.layout)
        try:
            record = read_own_record(lab)
        except LabError:
            record = None  # unreadable: the tag on the host still says what is ours
        if record is not None and record.status != REMOVING:
            record.status = REMOVING
            write_record(lab.layout, record)
        return remove_lab(lab, record, stop_timeout=stop_timeout)


def remove_lab(lab: LabRef, record: LabRecord | None, *, stop_timeout: float) -> DownReport:
    """Everything of ``lab`` on the host, then its state directory (lab lock held)."""
    stopped: dict[int, str] = {}
    killed: list[int] = []
    network = NetworkState()
    left_alone = None
    step = "looking at the host"
    try:
        with locked(host_lock()):
            here = _lab_here(lab, record, labs_on_host())
            if here is not None and here.owner not in (None, lab.owner):
                left_alone = (
                    f"{here.describe()} is not {lab.name}'s (its record is older than that "
                    "lab); its machines and network were left alone"
                )
            elif here is not None:
                step = "stopping machines"
                stopped, killed = _stop_machines(here, stop_timeout)
                step = "removing the network"
                network = remove_network(here.slot)
        step = f"removing {lab.layout.root}"
        state_removed = lab.layout.root.exists()
        remove_tree(lab.layout.root)
    except ApplianceError as exc:
        raise LabError(
            f"lab down of {lab.name} stopped while {step}: {exc}",
            hint=exc.hint or f"run `appliance lab down{lab.option()}` again",
        ) from exc
    prefix = here.slot.prefix if here is not None else ""
    machine_of = {pid: namespace.removeprefix(prefix) for pid, namespace in stopped.items()}
    return DownReport(
        name=lab.name,
        state=lab.layout.root,
        # A machine whose nspawn was killed is stopped again by its init's pid: named once.
        stopped=tuple(sorted(set(machine_of.values()))),
        killed=tuple(sorted({machine_of[p] for p in killed})),
        network=network,
        state_removed=state_removed,
        left_alone=left_alone,
    )


def _stop_machines(here: LabOnHost, timeout: float) -> tuple[dict[int, str], list[int]]:
    """Stop every machine of ``here``; (all that were stopped, those that had to be killed).

    A machine's nspawn killed after ``timeout`` leaves the machine's init running on its
    own, and a slow host may show one more init as its nspawn exits: look again and stop
    what is left, until nothing of the lab runs.
    """
    stopped: dict[int, str] = {}
    killed: list[int] = []
    running = here.machines
    for _ in range(3):
        if not running:
            return stopped, killed
        stopped |= running
        killed += nspawn.stop_processes(sorted(running), timeout=timeout)
        running = nspawn.find_machine_processes(prefix=here.slot.prefix)
    if running:
        left = ", ".join(f"{ns} (pid {pid})" for pid, ns in sorted(running.items()))
        raise LabError(
            f"lab machines still run after stopping them three times: {left}",
            hint="look at them with `ps -o pid,stat,cmd -p PID`",
        )
    return stopped, killed


def _lab_here(
    lab: LabRef, record: LabRecord | None, on_host: dict[int, LabOnHost]
) -> LabOnHost | None:
    """What of ``lab`` is on the host: by its record's number, else by its tag."""
    if record is not None:
        return on_host.get(record.index)
    for here in on_host.values():
        if here.owner == lab.owner:
            return here
    # The default lab's number is fixed: an untagged network there, with no record in the
    # default lab's directory, is what a killed `up` left before its state was deleted.
    zero = on_host.get(0)
    if lab.layout.root == default_state_dir(DEFAULT_LAB) and zero and zero.owner is None:
        return zero
    return None
