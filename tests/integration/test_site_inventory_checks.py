"""The site playbook refuses an inventory it cannot install before it changes any host.

The real playbook and roles, in check mode, against hosts that are this machine reached
with the local connection; the refusal comes in the first play's pre_tasks, on every host,
before any role runs on any of them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
#: The bundle's variables as far as the refusals read them: OpenZiti in the bundle.
EXTRA = {
    "appliance_images_catalog": {
        c: {"ref": f"localhost/appliance/{c}:1", "id": "x", "path": "x", "version": "1"}
        for c in ("ziti-controller", "ziti-router", "appliance-admin")
    },
    "appliance_placement": {},
    "appliance_edge_ports": {},
    "appliance_fips_mode": "off",
}


def _site(tmp_path: Path, children: dict[str, object]) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "inventory.yml"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {
                        **local,
                        "appliance_installer_address": "192.0.2.1",
                        "appliance_site_network": "192.0.2.0/24",
                    },
                    "children": children,
                }
            }
        )
    )
    ansible = Path(sys.executable).with_name("ansible-playbook")
    if not ansible.exists():
        ansible = Path(shutil.which("ansible-playbook") or "ansible-playbook")
    return subprocess.run(
        [
            str(ansible),
            "-i",
            str(inventory),
            "--check",
            "--extra-vars",
            json.dumps(EXTRA),
            str(REPO / "installer/site.yml"),
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "installer/ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "ANSIBLE_GATHERING": "explicit",
        },
        check=False,
        timeout=300,
    )


def _ran_roles(out: str) -> bool:
    return "TASK [fips" in out or "TASK [firewall" in out


@pytest.mark.parametrize("count", [2, 4])
def test_an_even_number_of_controllers_is_refused_before_any_role_runs(
    tmp_path: Path, count: int
) -> None:
    hosts = {f"ctrl{i}": {"ansible_host": f"192.0.2.{10 + i}"} for i in range(1, count + 1)}
    done = _site(tmp_path, {"controller": {"hosts": hosts}, "admin": {"hosts": {"ctrl1": {}}}})
    assert done.returncode != 0
    names = ", ".join(hosts)
    assert f"names {count} controller hosts ({names}): name one, or three or five" in done.stdout
    assert "a majority of its members" in done.stdout, done.stdout
    assert not _ran_roles(done.stdout), done.stdout


def test_a_controller_without_a_site_address_is_refused(tmp_path: Path) -> None:
    hosts = {
        "ctrl1": {"ansible_host": "192.0.2.11"},
        "ctrl2": {},
        "ctrl3": {"ansible_host": "192.0.2.13"},
    }
    done = _site(tmp_path, {"controller": {"hosts": hosts}, "admin": {"hosts": {"ctrl1": {}}}})
    assert done.returncode != 0
    assert "Controller host ctrl2 has no ansible_host" in done.stdout, done.stdout
    assert not _ran_roles(done.stdout), done.stdout


def test_a_vendor_access_host_other_than_the_admin_host_is_refused(tmp_path: Path) -> None:
    leg = {"appliance_outside_interface": "eth1", "appliance_outside_address": "198.51.100.2"}
    done = _site(
        tmp_path,
        {
            "controller": {"hosts": {"ctrl1": {"ansible_host": "192.0.2.11"}}},
            "admin": {"hosts": {"ctrl1": {}}},
            "gateway": {"hosts": {"gw1": {}}},
            "vendor_access": {"hosts": {"gw1": leg}},
        },
    )
    assert done.returncode != 0
    assert "gw1 is in group vendor_access: it must be the admin host" in done.stdout, done.stdout
    assert not _ran_roles(done.stdout), done.stdout


def test_a_cluster_without_the_admin_service_on_its_first_host_is_refused(tmp_path: Path) -> None:
    hosts = {f"ctrl{i}": {"ansible_host": f"192.0.2.{10 + i}"} for i in range(1, 4)}
    done = _site(tmp_path, {"controller": {"hosts": hosts}, "admin": {"hosts": {"ctrl2": {}}}})
    assert done.returncode != 0
    assert (
        "A cluster of 3 controllers needs the admin service on the first controller host (ctrl1)"
        in done.stdout
    ), done.stdout
    assert "no member's key leaves its host" in done.stdout, done.stdout
    assert not _ran_roles(done.stdout), done.stdout
