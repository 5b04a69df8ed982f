"""The installer's overlay services (group_vars/all/overlay.yml), as Ansible itself computes
them from an inventory: the model service on every GPU host, health-checked; a vendor
shell service per opted-in host on its own loopback port, hosted by the admin host; the
targets' sshd let the admin host in; none of the shells without break-glass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CATALOG = {
    c: {"ref": f"localhost/appliance/{c}:1", "id": c, "path": c, "version": "1"}
    for c in ("ziti-controller", "ziti-router", "appliance-admin", "vllm", "llm-gateway")
}
PROBE = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        content: >-
          {{ {'services': appliance_overlay_services, 'shells': appliance_vendor_shell_hosts,
              'ssh_from': appliance_vendor_shell_from} | to_json }}
        mode: "0600"
"""


def _computed(tmp_path: Path, *, vendor_access: bool) -> dict[str, Any]:
    controller: dict[str, Any] = {"ansible_host": "10.9.0.10"}
    if vendor_access:
        controller |= {
            "appliance_outside_interface": "eth1",
            "appliance_outside_address": "192.0.2.10",
        }
    hosts = {
        "ctrl1": controller,
        "gw1": {"ansible_host": "10.9.0.11", "appliance_vendor_shell": True},
        "gpu1": {"ansible_host": "10.9.0.12", "appliance_vendor_shell": True},
        "gpu2": {"ansible_host": "10.9.0.13", "appliance_vendor_shell": False},
    }
    groups = {"controller": ["ctrl1"], "admin": ["ctrl1"], "gateway": ["gw1"]}
    groups["gpu"] = ["gpu1", "gpu2"]
    if vendor_access:
        groups["vendor_access"] = ["ctrl1"]
    inventory = {
        "all": {
            "vars": {"ansible_connection": "local"},
            "hosts": hosts,
            "children": {g: {"hosts": dict.fromkeys(members)} for g, members in groups.items()},
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    (tmp_path / "group_vars").symlink_to(REPO / "installer" / "group_vars")
    (tmp_path / "probe.yml").write_text(PROBE)
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(tmp_path / "inventory.yml"),
            "-e",
            json.dumps({"appliance_images_catalog": CATALOG, "out": str(tmp_path)}),
            str(tmp_path / "probe.yml"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_PYTHON_INTERPRETER": sys.executable},
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {h: json.loads((tmp_path / f"{h}.json").read_text()) for h in hosts}


def test_each_opted_in_host_gets_a_service_on_its_own_port_hosted_by_the_admin_host(
    tmp_path: Path,
) -> None:
    computed = _computed(tmp_path, vendor_access=True)
    ctrl1 = computed["ctrl1"]
    assert ctrl1["shells"] == ["gw1", "gpu1"]  # inventory order; gpu2 said no
    shells = [s for s in ctrl1["services"] if s["name"].startswith("vendor-shell-")]
    assert shells == [
        {
            "name": "vendor-shell-gw1",
            "port": 2201,
            "component": "appliance-admin",
            "hosted_by": ["ctrl1"],
            "dialers": [],
        },
        {
            "name": "vendor-shell-gpu1",
            "port": 2202,
            "component": "appliance-admin",
            "hosted_by": ["ctrl1"],
            "dialers": [],
        },
    ]
    # Only the targets let the admin host's sshd client in; the others keep the installer's.
    assert computed["gw1"]["ssh_from"] == ["10.9.0.10"]
    assert computed["gpu1"]["ssh_from"] == ["10.9.0.10"]
    assert computed["gpu2"]["ssh_from"] == [] and ctrl1["ssh_from"] == []


def test_no_vendor_shell_without_break_glass(tmp_path: Path) -> None:
    computed = _computed(tmp_path, vendor_access=False)
    assert computed["ctrl1"]["shells"] == []
    assert not [s for s in computed["ctrl1"]["services"] if s["name"].startswith("vendor-shell")]
    assert computed["gw1"]["ssh_from"] == []


def test_every_gpu_host_serves_the_model_and_each_is_health_checked(tmp_path: Path) -> None:
    services = {s["name"]: s for s in _computed(tmp_path, vendor_access=False)["gw1"]["services"]}
    # One service, a terminator per GPU host (ADR 0022); the hosting tunnelers check
    # vLLM's /health and mark a host failed when it stops answering.
    assert services["vllm"]["hosted_by"] == ["gpu1", "gpu2"]
    assert services["vllm"]["health_path"] == "/health"
    assert services["llm-gateway"]["hosted_by"] == ["gw1"]
    assert services["llm-gateway"]["health_path"] == "/health"
    assert "health_path" not in services["appliance-admin"]
