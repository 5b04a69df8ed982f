"""The multi-host lab: systemd-nspawn machines in network namespaces stand in for a site.

``up`` makes it (cached debootstrap root filesystem, one copy per machine, a site bridge
with the workstation on it, an outside bridge with the vendor), ``status`` checks it,
``down`` removes every piece of it. See docs/lab.md.
"""

from __future__ import annotations

from appliance.lab.lab import DownReport, LabStatus, MachineStatus, UpReport, down, status, up
from appliance.lab.plan import DEFAULT_HOSTS, LabPlan, Machine, plan_lab
from appliance.lab.state import default_state_dir

__all__ = [
    "DEFAULT_HOSTS",
    "DownReport",
    "LabPlan",
    "LabStatus",
    "Machine",
    "MachineStatus",
    "UpReport",
    "default_state_dir",
    "down",
    "plan_lab",
    "status",
    "up",
]
