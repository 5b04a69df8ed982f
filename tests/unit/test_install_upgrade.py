"""Upgrade and rollback refusals that need no host, and the rollback point's format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import InstallError
from appliance.install.journal import new_journal
from appliance.install.layout import SiteDir
from appliance.install.steps import InstallOptions, locked_site
from appliance.install.upgrade import RollbackPoint, rollback, upgrade
from appliance.media.site_state import Installed

POINT = RollbackPoint(
    snapshot="2026.11.1-20261122T120000Z",
    installed=Installed("lab", "2026.11.1", "ab" * 32, {"targets": 2, "snapshot": 2}),
    upgraded_to="2026.11.2",
)


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text("all: {hosts: {}}\n")
    return path


def test_the_rollback_point_reads_back_what_it_wrote() -> None:
    assert RollbackPoint.from_json(json.loads(json.dumps(POINT.to_json()))) == POINT


def test_upgrade_of_a_site_never_installed_says_to_install(tmp_path: Path, inventory: Path) -> None:
    with pytest.raises(InstallError) as raised:
        upgrade(InstallOptions([tmp_path / "media"], inventory, tmp_path / "site"), print)
    assert "records no install to upgrade" in str(raised.value)
    assert raised.value.hint and "appliance install" in raised.value.hint


def test_rollback_without_an_upgrade_has_nowhere_to_go(tmp_path: Path, inventory: Path) -> None:
    with pytest.raises(InstallError) as raised:
        rollback(inventory, tmp_path / "site", 0, print)
    assert "no upgrade to roll back" in str(raised.value)


def test_rollback_refuses_an_interrupted_install(tmp_path: Path, inventory: Path) -> None:
    site = SiteDir(tmp_path / "site")
    site.root.mkdir()
    new_journal(site.journal, bundle="lab", version="1", targets_sha256="ab", kind="install")
    site.rollback_point.write_text(json.dumps(POINT.to_json()))
    with pytest.raises(InstallError) as raised:
        rollback(inventory, site.root, 0, print)
    assert "an install of 1 was interrupted" in str(raised.value)


def test_rollback_of_an_upgrade_that_changed_no_host_says_so(
    tmp_path: Path, inventory: Path
) -> None:
    site = SiteDir(tmp_path / "site")
    site.root.mkdir()
    journal = new_journal(
        site.journal, bundle="lab", version="2", targets_sha256="ab", kind="upgrade"
    )
    journal.done("verify")
    site.rollback_point.write_text(json.dumps(POINT.to_json()))  # from an earlier upgrade
    with pytest.raises(InstallError) as raised:
        rollback(inventory, site.root, 0, print)
    assert "stopped before it changed any host" in str(raised.value)


def test_a_damaged_rollback_point_is_named(tmp_path: Path, inventory: Path) -> None:
    site = SiteDir(tmp_path / "site")
    site.root.mkdir()
    site.rollback_point.write_text('{"snapshot": 1}')
    with pytest.raises(InstallError) as raised:
        rollback(inventory, site.root, 0, print)
    assert str(site.rollback_point) in str(raised.value)


def test_a_playbook_left_by_a_killed_run_blocks_the_next(tmp_path: Path, inventory: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    playbook = tmp_path / "bin/ansible-playbook"  # invoked as ansible-runner invokes it
    playbook.parent.mkdir()
    playbook.write_text("import time\ntime.sleep(60)\n")
    orphan = subprocess.Popen([sys.executable, str(playbook), f"{site}/stage/1/site.yml"])
    try:
        with pytest.raises(InstallError) as raised, locked_site(site, inventory):
            pass
        assert f"pid {orphan.pid}" in str(raised.value)
    finally:
        orphan.kill()
        orphan.wait()
    with locked_site(site, inventory) as held:  # gone: the next run goes ahead
        assert held.root == site
