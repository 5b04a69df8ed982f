"""Which lab a command means (its name and state directory), its record, and its locks.

Labs are named; the name is what a person types (``appliance lab down test``) and what
the lab's network is tagged with on the host. Without ``--state``, a lab lives where the
host's tag says, else in ``<cache>/lab/<name>``. Two kinds of lock, both about the host
(network names are global to it, whatever cache directory a command was given): one
per lab name for that lab's whole ``up`` or ``down``, one for the host's network while
a lab takes a number and makes its network, or stops its machines and removes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.errors import LabError
from appliance.lab.labs import find_lab, labs_on_host
from appliance.lab.network import LabOwner
from appliance.lab.plan import DEFAULT_LAB, check_lab_name
from appliance.lab.state import LabRecord, StateLayout, default_state_dir, read_record

__all__ = [
    "LOCK_DIR",
    "LabRef",
    "host_lock",
    "lab_lock",
    "locate",
    "read_own_record",
    "refuse_foreign_directory",
]

LOCK_DIR = Path("/run/lock/appliance-lab")


@dataclass(frozen=True)
class LabRef:
    """A lab's name and where its state lives."""

    name: str
    layout: StateLayout

    @property
    def owner(self) -> LabOwner:
        """The tag its network carries on the host."""
        return LabOwner(self.name, self.layout.root)

    def option(self) -> str:
        """How to name it on the command line: `` test``, `` --state DIR`` or nothing."""
        name = "" if self.name == DEFAULT_LAB else f" {self.name}"
        if self.layout.root == default_state_dir(self.name):
            return name
        return f"{name} --state {self.layout.root}"

    def down_hint(self) -> str:
        """``run `appliance lab down …` first``, naming this lab."""
        return f"run `appliance lab down{self.option()}` first"


def locate(name: str | None, state: Path | None) -> LabRef:
    """Which lab a command means.

    Without ``state``: lab ``name`` (default: the demo's) where the host's tag says it
    lives, else in its default directory. With ``state``: the lab its record names (and
    LabError if that is not ``name``), else ``name`` or the default.
    """
    if state is None:
        name = check_lab_name(name or DEFAULT_LAB)
        here = find_lab(labs_on_host(), name)
        root = here.owner.state if here and here.owner else default_state_dir(name)
        return LabRef(name, StateLayout(root))
    layout = StateLayout(state.expanduser().absolute())
    try:
        recorded = read_record(layout)
    except LabError:
        recorded = None  # `down` removes it all the same; `up` and `status` say why not
    if recorded is not None and name is not None and recorded.name != name:
        raise LabError(
            f"{layout.root} holds lab {recorded.name}, not {name}",
            hint=f"name the lab {recorded.name}, or give --state the directory of lab {name}",
        )
    if name is None:
        name = recorded.name if recorded is not None else DEFAULT_LAB
    return LabRef(check_lab_name(name), layout)


def read_own_record(lab: LabRef) -> LabRecord | None:
    """``lab.json`` of ``lab``; None when there is none, LabError when it is another lab's."""
    record = read_record(lab.layout)
    if record is not None and record.name != lab.name:
        raise LabError(
            f"{lab.layout.record} is the record of lab {record.name}, not {lab.name}",
            hint=f"name the lab {record.name}",
        )
    return record


def refuse_foreign_directory(layout: StateLayout) -> None:
    """Never adopt or delete a directory that is not a lab's (``--state ~`` by mistake)."""
    try:
        entries = sorted(p.name for p in layout.root.iterdir())
    except FileNotFoundError:
        return
    except NotADirectoryError as exc:
        raise LabError(
            f"the lab state path {layout.root} is not a directory", hint="use --state DIR"
        ) from exc
    foreign = [name for name in entries if not layout.is_lab_file(name)]
    if foreign:
        raise LabError(
            f"{layout.root} holds files that are not the lab's ({', '.join(foreign[:5])}); "
            "it is not touched",
            hint="give --state a new directory, or one a lab made",
        )


def lab_lock(name: str) -> Path:
    """The lock held for lab ``name``'s whole ``up`` or ``down``."""
    return LOCK_DIR / f"lab-{name}.lock"


def host_lock() -> Path:
    """The lock held while a lab takes a number and makes or removes its network."""
    return LOCK_DIR / "network.lock"
