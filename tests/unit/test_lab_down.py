"""Issue 17: `lab down` takes "already absent" as done, at every step, and fails only on a
real failure, naming it. A fake host answers the commands as iproute2, nftables, umount
and rm do; pieces vanish at the worst moment, as they did in the failed run
(`ip link delete apl-s-gpu1`: Cannot find device)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.errors import LabError
from appliance.lab.files import remove_tree
from appliance.lab.machines import stop_processes
from appliance.lab.network import LabOwner, remove_network
from appliance.lab.plan import plan_lab
from tests.unit.fake_lab_host import FakeHost

PLAN = plan_lab(["ctrl1", "gw1", "gpu1"])
SLOT = PLAN.slot


@pytest.fixture
def host() -> FakeHost:
    fake = FakeHost()
    fake.add_lab(PLAN, LabOwner("default", Path("/state")))
    return fake


def test_down_removes_every_piece(host: FakeHost) -> None:
    found = remove_network(SLOT, host, settle=0)
    assert set(found.namespaces) == set(PLAN.namespaces)
    assert "apl-site0" in found.links
    assert found.firewall == "appliance_lab"
    assert host.lab_pieces(SLOT) == []


def test_issue17_veth_gone_when_its_delete_runs(host: FakeHost) -> None:
    # The failed run: apl-s-gpu1 was listed, then gone when `ip link delete` ran.
    host.linger["apl-s-gpu1"] = 99
    host.before[("ip", "link", "delete", "apl-s-gpu1")] = lambda: host.links.pop("apl-s-gpu1")
    remove_network(SLOT, host, settle=0)
    assert host.lab_pieces(SLOT) == []
    assert ("ip", "link", "delete", "apl-s-gpu1") in host.calls


def test_issue17_veth_deleted_before_down(host: FakeHost) -> None:
    del host.links["apl-s-ctrl1"]
    found = remove_network(SLOT, host, settle=0)
    assert "apl-s-ctrl1" not in found.links
    assert host.lab_pieces(SLOT) == []


def test_issue17_namespace_gone_when_its_delete_runs(host: FakeHost) -> None:
    host.before[("ip", "netns", "delete", "apl-gw1")] = lambda: host.namespaces.discard("apl-gw1")
    remove_network(SLOT, host, settle=0)
    assert host.lab_pieces(SLOT) == []


def test_issue17_bridge_gone_when_its_delete_runs(host: FakeHost) -> None:
    host.before[("ip", "link", "delete", "apl-ext0")] = lambda: host.links.pop("apl-ext0")
    remove_network(SLOT, host, settle=0)
    assert host.lab_pieces(SLOT) == []


def test_issue17_firewall_table_gone_when_its_delete_runs(host: FakeHost) -> None:
    drop = ("nft", "delete", "table", "inet", "appliance_lab")
    host.before[drop] = lambda: host.tables.discard("appliance_lab")
    remove_network(SLOT, host, settle=0)
    assert host.lab_pieces(SLOT) == []


def test_issue17_a_piece_that_stays_is_a_named_failure(host: FakeHost) -> None:
    argv = ("ip", "link", "delete", "apl-site0")
    host.refuse[argv] = "RTNETLINK answers: Operation not permitted"
    with pytest.raises(LabError) as info:
        remove_network(SLOT, host, settle=0)
    message = str(info.value)
    assert "link apl-site0" in message
    assert "`ip link delete apl-site0` exited with status 2" in message
    assert "Operation not permitted" in message
    assert "still there" in message
    assert info.value.hint
    # Everything before it was removed; only the bridge and what follows it are left.
    assert set(host.lab_pieces(SLOT)) == {"apl-site0", "nft table inet appliance_lab"}


def test_issue17_a_namespace_that_stays_is_a_named_failure(host: FakeHost) -> None:
    host.refuse[("ip", "netns", "delete", "apl-gpu1")] = "Cannot remove namespace file: Busy"
    with pytest.raises(LabError, match="network namespace apl-gpu1.*Busy.*still there"):
        remove_network(SLOT, host, settle=0)


def test_issue17_what_is_still_listed_after_removal_is_named(host: FakeHost) -> None:
    # `ip link delete` said yes, yet the link is still listed when down looks again.
    host.phantom.add("apl-s-gpu1")
    with pytest.raises(LabError, match=r"still partly there .*: apl-s-gpu1$"):
        remove_network(SLOT, host, settle=0.2)


def test_issue17_nothing_there_is_nothing_to_do() -> None:
    host = FakeHost()
    found = remove_network(SLOT, host, settle=0)
    assert found.empty
    assert not [c for c in host.calls if "delete" in c]


def _mount_line(point: Path) -> str:
    return f"36 25 0:32 / {point} rw,relatime shared:1 - tmpfs tmpfs rw\n"


def test_issue17_mount_gone_when_its_umount_runs(tmp_path: Path) -> None:
    tree = tmp_path / "state"
    (tree / "machines/ctrl1/root/proc").mkdir(parents=True)
    point = tree / "machines/ctrl1/root/proc"
    host = FakeHost()
    host.mountinfo = tmp_path / "mountinfo"
    host.mountinfo.write_text(_mount_line(point))
    assert host.mountinfo is not None
    mountinfo = host.mountinfo
    host.before[("umount", "--lazy", str(point))] = lambda: mountinfo.write_text("")
    remove_tree(tree, run=host, mountinfo=mountinfo)
    assert not tree.exists()


def test_issue17_mount_that_stays_is_a_named_failure(tmp_path: Path) -> None:
    tree = tmp_path / "state"
    point = tree / "machines/ctrl1/root/proc"
    point.mkdir(parents=True)
    host = FakeHost()
    host.mountinfo = tmp_path / "mountinfo"
    host.mountinfo.write_text(_mount_line(point))
    host.refuse[("umount", "--lazy", str(point))] = f"umount: {point}: target is busy."
    with pytest.raises(LabError, match=f"the mount at {point}.*busy"):
        remove_tree(tree, run=host, mountinfo=host.mountinfo)
    assert point.is_dir()  # nothing below a mount was deleted


def test_issue17_state_files_gone_meanwhile(tmp_path: Path) -> None:
    tree = tmp_path / "state"
    tree.mkdir()
    (tree / "lab.json").write_text("{}")
    host = FakeHost()
    host.mountinfo = tmp_path / "mountinfo"
    host.mountinfo.write_text("")
    rm = ("rm", "-rf", "--one-file-system", "--", str(tree))
    host.before[rm] = lambda: shutil.rmtree(tree)
    host.refuse[rm] = f"rm: cannot remove '{tree}': No such file or directory"
    remove_tree(tree, run=host, mountinfo=host.mountinfo)
    assert not tree.exists()
    remove_tree(tree, run=host, mountinfo=host.mountinfo)  # and absent from the start


def test_issue17_machine_already_gone_is_stopped() -> None:
    # A pid above the kernel's limit names no process, as a machine killed meanwhile.
    gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    assert stop_processes([gone], timeout=1) == []


def test_an_init_left_by_a_killed_nspawn_is_stopped_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI: a machine slow to power off had its nspawn killed; its init ran on, and the lab
    # test found it after `lab down` had returned.
    from appliance.lab import machines, teardown
    from appliance.lab.labs import LabOnHost

    running = {10: f"{SLOT.prefix}ctrl1", 11: f"{SLOT.prefix}gw1"}
    orphan = {20: f"{SLOT.prefix}gw1"}
    rounds: list[list[int]] = []

    def stop(pids: list[int], *, timeout: float) -> list[int]:
        rounds.append(pids)
        return [11] if pids == [10, 11] else []

    left = [orphan, {}]
    monkeypatch.setattr(machines, "stop_processes", stop)
    monkeypatch.setattr(machines, "find_machine_processes", lambda prefix: left.pop(0))
    stopped, killed = teardown._stop_machines(LabOnHost(SLOT, None, machines=running), 1)
    assert rounds == [[10, 11], [20]]
    assert stopped == running | orphan
    assert killed == [11]


def test_machines_that_never_stop_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.lab import machines, teardown
    from appliance.lab.labs import LabOnHost

    stuck = {30: f"{SLOT.prefix}gpu1"}
    monkeypatch.setattr(machines, "stop_processes", lambda pids, *, timeout: pids)
    monkeypatch.setattr(machines, "find_machine_processes", lambda prefix: stuck)
    with pytest.raises(LabError, match=f"still run.*{SLOT.prefix}gpu1 \\(pid 30\\)"):
        teardown._stop_machines(LabOnHost(SLOT, None, machines=stuck), 1)
