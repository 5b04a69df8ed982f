"""The lab's Ansible inventory (``inventory.yml``): the installer's view of the lab.

Its shape is a contract with the installer (``installer/``): groups ``controller``,
``admin`` (the first controller), ``vendor_access`` (the same host: its outside leg is
where the vendor's engineers come in during a break-glass window), ``gateway`` (with each
host's outside address) and ``gpu`` (vLLM on the CPU in the lab), plus ``other`` for hosts
of no known role.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from appliance._fsutil import atomic_write_bytes
from appliance.lab.plan import LabPlan, Machine
from appliance.lab.ssh import SshAccess

__all__ = ["GROUP_ORDER", "inventory", "render_inventory", "write_inventory"]

#: Groups in the order they are written; a group without hosts is left out.
GROUP_ORDER = ("controller", "admin", "vendor_access", "gateway", "gpu", "other")
_GROUP_VARS: dict[str, dict[str, Any]] = {"gpu": {"vllm_device": "cpu"}}


def inventory(plan: LabPlan, ssh: SshAccess) -> dict[str, Any]:
    """The inventory as plain data (YAML inventory layout)."""
    members: dict[str, list[Machine]] = {group: [] for group in GROUP_ORDER}
    for machine in plan.machines:
        members[machine.group].append(machine)
    if members["controller"]:
        members["admin"].append(members["controller"][0])
    if plan.vendor_access is not None:
        members["vendor_access"].append(plan.vendor_access)
    children: dict[str, Any] = {}
    for group in GROUP_ORDER:
        if not members[group]:
            continue
        # Where break-glass is installed, the GPU hosts offer the vendor a recorded shell.
        shell = plan.vendor_access is not None
        entry: dict[str, Any] = {"hosts": {m.name: _host_vars(m, shell) for m in members[group]}}
        if group in _GROUP_VARS:
            entry["vars"] = dict(_GROUP_VARS[group])
        children[group] = entry
    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(ssh.key),
                "ansible_ssh_common_args": " ".join(ssh.options()),
                "ansible_python_interpreter": "/usr/bin/python3",
                "appliance_installer_address": plan.slot.installer_address,
                "appliance_site_network": plan.slot.site_network,
                "appliance_lab": True,
            },
            "children": children,
        }
    }


def render_inventory(plan: LabPlan, ssh: SshAccess) -> str:
    """The inventory as YAML text, keys in the documented order."""
    header = "# The multi-host lab, written by `appliance lab up`; removed by `lab down`.\n"
    return header + yaml.safe_dump(inventory(plan, ssh), sort_keys=False, width=1000)


def _host_vars(machine: Machine, vendor_shell: bool) -> dict[str, Any]:
    host: dict[str, Any] = {"ansible_host": machine.site_address}
    if vendor_shell and machine.group == "gpu":
        host["appliance_vendor_shell"] = True
    if machine.outside_address:
        host["appliance_outside_address"] = machine.outside_address
        host["appliance_outside_interface"] = "eth1"
    return host


def write_inventory(path: Path, plan: LabPlan, ssh: SshAccess) -> None:
    """Write ``render_inventory`` to ``path`` atomically."""
    atomic_write_bytes(path, render_inventory(plan, ssh).encode("utf-8"))
