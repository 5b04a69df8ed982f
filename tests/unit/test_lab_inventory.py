"""inventory.yml is a contract with the installer: its exact shape is pinned here."""

from __future__ import annotations

from pathlib import Path

import yaml

from appliance.lab.inventory import render_inventory
from appliance.lab.plan import plan_lab
from appliance.lab.ssh import SshAccess

STATE = Path("/state")
SSH = SshAccess(key=STATE / "id_ecdsa", known_hosts=STATE / "known_hosts")


def test_default_lab_inventory_shape() -> None:
    parsed = yaml.safe_load(render_inventory(plan_lab(["ctrl1", "gw1", "gpu1"]), SSH))
    # The first controller is the admin host and the vendor access host: its outside leg
    # is where the break-glass gate stands.
    ctrl1 = {
        "ansible_host": "10.231.0.10",
        "appliance_outside_address": "10.231.1.9",
        "appliance_outside_interface": "eth1",
    }
    assert parsed == {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": "/state/id_ecdsa",
                "ansible_ssh_common_args": "-o UserKnownHostsFile=/state/known_hosts "
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
                "ansible_python_interpreter": "/usr/bin/python3",
                "appliance_installer_address": "10.231.0.1",
                "appliance_site_network": "10.231.0.0/24",
                "appliance_lab": True,
            },
            "children": {
                "controller": {"hosts": {"ctrl1": ctrl1}},
                "admin": {"hosts": {"ctrl1": ctrl1}},
                "vendor_access": {"hosts": {"ctrl1": ctrl1}},
                "gateway": {
                    "hosts": {
                        "gw1": {
                            "ansible_host": "10.231.0.11",
                            "appliance_outside_address": "10.231.1.2",
                            "appliance_outside_interface": "eth1",
                        }
                    }
                },
                "gpu": {
                    "hosts": {
                        "gpu1": {"ansible_host": "10.231.0.12", "appliance_vendor_shell": True}
                    },
                    "vars": {"vllm_device": "cpu"},
                },
            },
        }
    }


def test_first_controller_alone_is_admin_and_others_are_grouped() -> None:
    text = render_inventory(plan_lab(["ctrl1", "ctrl2", "ctrl3", "db1"]), SSH)
    children = yaml.safe_load(text)["all"]["children"]
    assert list(children) == ["controller", "admin", "vendor_access", "other"]
    assert list(children["controller"]["hosts"]) == ["ctrl1", "ctrl2", "ctrl3"]
    assert list(children["admin"]["hosts"]) == ["ctrl1"]
    assert list(children["vendor_access"]["hosts"]) == ["ctrl1"]
    assert "appliance_outside_address" not in children["controller"]["hosts"]["ctrl2"]
    assert children["other"] == {"hosts": {"db1": {"ansible_host": "10.231.0.13"}}}


def test_no_yaml_anchors() -> None:
    # ctrl1 appears twice; an anchor/alias pair would read the same but confuse people.
    text = render_inventory(plan_lab(["ctrl1"]), SSH)
    assert "&" not in text
    assert "*" not in text
