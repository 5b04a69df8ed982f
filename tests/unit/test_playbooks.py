"""Every playbook the installer runs passes Ansible's own syntax check (roles included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted(p.name for p in (REPO / "installer").glob("*.yml") if "inventory" not in p.name)


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax(playbook: str) -> None:
    ansible = Path(sys.executable).with_name("ansible-playbook")
    if not ansible.exists():
        ansible = Path(shutil.which("ansible-playbook") or "ansible-playbook")
    done = subprocess.run(
        [str(ansible), "--syntax-check", "-i", "localhost,", str(REPO / "installer" / playbook)],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles")},
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
