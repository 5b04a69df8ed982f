"""The lab's state directory: where each file lives, and the ``lab.json`` record format.

``lab.json`` is written before anything of the lab is made (status ``making``) and
rewritten as machines start and when the lab is up, always atomically, so ``lab status``
and ``lab down`` know what a lab is made of even after a ``lab up`` was killed. ``lab
down`` marks it ``removing`` before it touches anything, so the next ``lab up`` knows to
finish a ``down`` that was interrupted. It records the lab's name and number (``Slot``):
the number decides every name and address the lab holds on the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance._fsutil import atomic_write_json
from appliance.errors import LabError
from appliance.lab.plan import DEFAULT_LAB, MAX_LABS, LabPlan, check_lab_name, plan_lab
from appliance.lab.ssh import SshAccess
from appliance.settings import cache_dir

__all__ = [
    "FORMAT",
    "LabRecord",
    "StateLayout",
    "default_state_dir",
    "read_record",
    "write_record",
]

FORMAT = 2
#: Format 1 records (before labs had names) are read as the default lab, number 0.
_FORMATS = (1, FORMAT)
_LAB_FILES = frozenset(
    {"lab.json", "inventory.yml", "id_ecdsa", "id_ecdsa.pub", "known_hosts", "machines"}
)
MAKING = "making"
UP = "up"
REMOVING = "removing"
_STATUSES = (MAKING, UP, REMOVING)


def default_state_dir(name: str = DEFAULT_LAB) -> Path:
    """Where lab ``name`` lives unless told otherwise: ``<cache dir>/lab/<name>``."""
    return cache_dir() / "lab" / check_lab_name(name)


@dataclass(frozen=True)
class StateLayout:
    """Every path inside a lab's state directory."""

    root: Path

    @property
    def record(self) -> Path:
        """``lab.json``: what the lab is made of."""
        return self.root / "lab.json"

    @property
    def inventory(self) -> Path:
        """``inventory.yml``: the Ansible inventory for the installer."""
        return self.root / "inventory.yml"

    @property
    def ssh(self) -> SshAccess:
        """The installer's key (``id_ecdsa``) and the machines' ``known_hosts``."""
        return SshAccess(key=self.root / "id_ecdsa", known_hosts=self.root / "known_hosts")

    def is_lab_file(self, name: str) -> bool:
        """Whether ``name`` (an entry of the state directory) is one the lab writes."""
        if name in _LAB_FILES:
            return True
        # Temporary files of atomic writes: ".lab.json.XXXX.tmp".
        return name.startswith(".") and name.endswith(".tmp")

    def machine_root(self, name: str) -> Path:
        """The root filesystem of machine ``name``."""
        return self.root / "machines" / name / "root"

    def machine_log(self, name: str) -> Path:
        """The console log of machine ``name``."""
        return self.root / "machines" / name / "console.log"


@dataclass
class LabRecord:
    """The content of ``lab.json``."""

    hosts: tuple[str, ...]
    name: str = DEFAULT_LAB
    #: The lab's number on the host (``Slot.index``).
    index: int = 0
    status: str = MAKING
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def plan(self) -> LabPlan:
        """The address plan the lab was made from."""
        return plan_lab(self.hosts, self.index)

    def to_json(self, layout: StateLayout) -> dict[str, Any]:
        """Plain data for ``lab.json``, with the derived names spelled out for people."""
        plan = self.plan
        slot = plan.slot
        return {
            "format": FORMAT,
            "name": self.name,
            "index": self.index,
            "status": self.status,
            "hosts": list(self.hosts),
            "machines": {
                m.name: {
                    "group": m.group,
                    "address": m.site_address,
                    "outside_address": m.outside_address,
                    "namespace": m.namespace,
                    "pid": self.pids.get(m.name),
                    "root": str(layout.machine_root(m.name)),
                    "log": str(layout.machine_log(m.name)),
                }
                for m in plan.machines
            },
            "vendor": {"namespace": plan.vendor.namespace, "address": plan.vendor.address},
            "bridges": {"site": slot.site_bridge, "outside": slot.ext_bridge},
            "networks": {"site": slot.site_network, "outside": slot.outside_network},
            "installer_address": slot.installer_address,
            "firewall_table": f"inet {slot.nft_table}",
        }


def write_record(layout: StateLayout, record: LabRecord) -> None:
    """Write ``lab.json`` atomically."""
    atomic_write_json(layout.record, record.to_json(layout))


def read_record(layout: StateLayout) -> LabRecord | None:
    """Read ``lab.json``; None when there is none, LabError when it is not one of ours."""
    try:
        data = json.loads(layout.record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise _malformed(layout, f"unreadable ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") not in _FORMATS:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _malformed(layout, f"expected format {FORMAT}, found {found!r}")
    hosts = data.get("hosts")
    status = data.get("status")
    machines = data.get("machines")
    name = data.get("name", DEFAULT_LAB)
    index = data.get("index", 0)
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise _malformed(layout, "expected a list of host names under 'hosts'")
    if status not in _STATUSES or not isinstance(machines, dict):
        raise _malformed(
            layout, f"expected 'status' (one of {', '.join(_STATUSES)}) and 'machines'"
        )
    if not isinstance(name, str) or not isinstance(index, int) or not 0 <= index < MAX_LABS:
        raise _malformed(layout, f"expected a lab 'name' and an 'index' from 0 to {MAX_LABS - 1}")
    pids = {}
    for machine, entry in machines.items():
        pid = entry.get("pid") if isinstance(entry, dict) else None
        if isinstance(pid, int):
            pids[str(machine)] = pid
    return LabRecord(hosts=tuple(hosts), name=name, index=index, status=status, pids=pids)


def _malformed(layout: StateLayout, detail: str) -> LabError:
    return LabError(
        f"{layout.record} is not a lab record: {detail}",
        hint=f"run `appliance lab down --state {layout.root}` to remove the lab it belonged to",
    )
