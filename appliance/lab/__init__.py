"""The multi-host lab: systemd-nspawn machines in network namespaces stand in for a site.

``up`` makes it (cached debootstrap root filesystem, one copy per machine, a site bridge
with the workstation on it, an outside bridge with the vendor), ``status`` checks it,
``down`` removes every piece of it. Labs are named; several can be up side by side
(the demo's ``default`` beside the test tier's ``test``). See docs/lab.md.
"""

from __future__ import annotations

from appliance.lab.lab import LabStatus, MachineStatus, UpReport, reboot, status, up
from appliance.lab.labs import LabOnHost, labs_on_host
from appliance.lab.plan import DEFAULT_HOSTS, DEFAULT_LAB, LabPlan, Machine, Slot, plan_lab
from appliance.lab.state import default_state_dir
from appliance.lab.teardown import DownReport, down

__all__ = [
    "DEFAULT_HOSTS",
    "DEFAULT_LAB",
    "DownReport",
    "LabOnHost",
    "LabPlan",
    "LabStatus",
    "Machine",
    "MachineStatus",
    "Slot",
    "UpReport",
    "default_state_dir",
    "down",
    "labs_on_host",
    "plan_lab",
    "reboot",
    "status",
    "up",
]
