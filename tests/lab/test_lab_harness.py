"""The multi-host lab, booted for real: ctrl1, gw1, gpu1 and the vendor outside.

One lab for the whole module (booting takes seconds to tens of seconds), named ``test``
so that it comes up beside a demo lab; its number, and so its addresses, are whatever
was free. The last test takes it down and checks that nothing of it is left on the host.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.lab import LabPlan, down, status, up
from appliance.lab.rootfs import ensure_lab_rootfs
from appliance.lab.state import StateLayout, read_record
from tests.lab.conftest import TEST_LAB
from tests.lab.support import (
    appliance,
    assert_nothing_of_the_lab_left,
    default_gateway,
    ssh,
    tcp_probe,
    workstation_address,
)

HOSTS = ("ctrl1", "gw1", "gpu1")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A lab up for the module; taken down afterwards whatever happened."""
    state = tmp_path_factory.mktemp("lab") / "state"
    up(HOSTS, state, name=TEST_LAB)
    try:
        yield state
    finally:
        down(state)


@pytest.fixture(scope="module")
def plan(lab: Path) -> LabPlan:
    """The lab's names and addresses, as `up` recorded them."""
    record = read_record(StateLayout(lab))
    assert record is not None
    return record.plan


@pytest.fixture(scope="module")
def site(plan: LabPlan) -> dict[str, str]:
    """Machine name → site address."""
    return {m.name: m.site_address for m in plan.machines}


def test_inventory_and_record(lab: Path, site: dict[str, str]) -> None:
    text = (lab / "inventory.yml").read_text()
    assert f"ansible_ssh_private_key_file: {lab}/id_ecdsa" in text
    assert oct((lab / "id_ecdsa").stat().st_mode & 0o777) == "0o600"
    assert "ecdsa-sha2-nistp384" in (lab / "id_ecdsa.pub").read_text()
    record = json.loads((lab / "lab.json").read_text())
    assert record["status"] == "up"
    assert record["name"] == TEST_LAB
    assert {name: m["address"] for name, m in record["machines"].items()} == site


def test_ssh_into_each_machine_with_strict_host_keys(lab: Path, site: dict[str, str]) -> None:
    for name, address in site.items():
        done = ssh(lab, address, "hostname")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == name


def test_unknown_host_key_is_refused(lab: Path, site: dict[str, str], tmp_path: Path) -> None:
    # Strict checking is really on: with another machine's key listed, SSH refuses.
    other = tmp_path / "state"
    other.mkdir()
    (other / "id_ecdsa").write_bytes((lab / "id_ecdsa").read_bytes())
    (other / "id_ecdsa").chmod(0o600)
    ctrl1_keys = [ln for ln in (lab / "known_hosts").read_text().splitlines() if "ctrl1" in ln]
    ctrl1, gpu1 = f"{site['ctrl1']},ctrl1", f"{site['gpu1']},gpu1"
    wrong = [ln.replace(ctrl1, gpu1) for ln in ctrl1_keys]
    assert wrong != ctrl1_keys
    (other / "known_hosts").write_text("\n".join(wrong) + "\n")
    done = ssh(other, site["gpu1"], "true")
    assert done.returncode != 0
    assert "host key" in done.stderr.lower() or "identification" in done.stderr.lower()


def test_machines_are_distinct_hosts(lab: Path, site: dict[str, str]) -> None:
    ids = {ssh(lab, a, "cat /etc/machine-id").stdout.strip() for a in site.values()}
    assert len(ids) == len(site)
    keys = (lab / "known_hosts").read_text().splitlines()
    assert len({ln.split()[2] for ln in keys}) == len(keys)


def test_no_default_route_and_no_dns(lab: Path, plan: LabPlan) -> None:
    for machine in plan.machines:
        routes = ssh(lab, machine.site_address, "ip route; echo ---; cat /etc/resolv.conf")
        assert routes.returncode == 0, routes.stderr
        route_text, _, resolv = routes.stdout.partition("---")
        assert "default" not in route_text
        assert f"{plan.slot.site_network} dev eth0" in route_text
        assert "nameserver" not in resolv
    gw1 = plan.machine("gw1")
    shown = ssh(lab, gw1.site_address, "ip -4 -o address show dev eth1").stdout
    assert f"{gw1.outside_address}/24" in shown


def test_hosts_reach_each_other_on_the_site_network(lab: Path, plan: LabPlan) -> None:
    site = {m.name: m.site_address for m in plan.machines}
    for name, address in site.items():
        for other, target in site.items():
            if other != name:
                done = ssh(lab, address, f"ping -c 1 -W 5 {target}")
                assert done.returncode == 0, f"{name} cannot reach {other}: {done.stdout}"
        done = ssh(lab, address, f"ping -c 1 -W 5 {plan.slot.installer_address}")
        assert done.returncode == 0, f"{name} cannot reach the workstation: {done.stdout}"


def test_no_way_out_even_with_a_default_route(lab: Path, plan: LabPlan) -> None:
    outside = [workstation_address(), default_gateway()]
    gpu1 = plan.machine("gpu1").site_address
    for target in outside:
        done = ssh(lab, gpu1, f"ping -c 1 -W 2 {target}")
        assert done.returncode != 0
        assert "unreachable" in (done.stdout + done.stderr).lower()
    # A host that adds a route out still gets nowhere: the workstation's firewall table.
    probe = "; ".join(f"ping -c 1 -W 2 {t} >/dev/null && echo reached {t}" for t in outside)
    done = ssh(
        lab,
        gpu1,
        f"ip route add default via {plan.slot.installer_address} && {{ {probe}; }}; "
        "ip route del default",
    )
    assert "reached" not in done.stdout, done.stdout
    assert "default" not in ssh(lab, gpu1, "ip route").stdout


def test_vendor_reaches_only_the_outside_legs_and_the_access_hosts_address(
    lab: Path, plan: LabPlan
) -> None:
    access = plan.vendor_access
    assert access is not None and access.outside_address is not None
    others = [
        *(m.site_address for m in plan.machines if m is not access),
        plan.slot.installer_address,
        workstation_address(),
    ]
    legs = [m.outside_address for m in plan.machines if m.outside_address]
    assert len(legs) == 2  # gw1's and the access host's (ctrl1)
    targets = [*legs, access.site_address, *others]
    found = tcp_probe(plan.vendor.namespace, [(t, 22) for t in targets])
    for leg in legs:
        assert found[leg] == "open", (leg, found[leg])
    # The vendor's one route into the site: the access host's own address, through its
    # outside leg (installed, the firewall and the break-glass gate decide what answers).
    assert found[access.site_address] == "open"
    for target in others:
        assert "unreachable" in found[target].lower(), (target, found[target])


def test_hosts_do_not_route_the_vendor_in(lab: Path, plan: LabPlan) -> None:
    vendor = plan.vendor.namespace
    targets = [(plan.machine("gpu1").site_address, 22), (plan.slot.installer_address, 22)]
    for host in ("gw1", "ctrl1"):
        leg = plan.machine(host).outside_address
        assert leg is not None
        add = ["ip", "-n", vendor, "route", "add", plan.slot.site_network, "via", leg]
        subprocess.run(add, check=True)
        try:
            found = tcp_probe(vendor, targets)
        finally:
            subprocess.run([*add[:4], "del", *add[5:]], check=True)
        assert "open" not in found.values(), (host, found)


def test_podman_runs_in_gpu1(lab: Path, site: dict[str, str]) -> None:
    # No image can be pulled: make a tiny one from the machine's own `cat` and its libraries.
    script = (
        "set -e; d=$(mktemp -d); "
        'for f in /usr/bin/cat $(ldd /usr/bin/cat | grep -o "/[^ ]*"); do '
        'cp --parents "$f" "$d"; done; '
        'tar -C "$d" -c . | podman import -q - localhost/lab-probe:1 >/dev/null; '
        "podman run --rm --network host localhost/lab-probe:1 /usr/bin/cat /proc/net/dev"
    )
    done = ssh(lab, site["gpu1"], f"bash -c {shlex.quote(script)}", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "eth0:" in done.stdout  # the container sees the machine's own network


def test_status_command(lab: Path, site: dict[str, str]) -> None:
    for args in (("--state", str(lab)), (TEST_LAB,)):
        done = appliance("lab", "status", *args, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"lab {TEST_LAB} (number" in done.stdout
        assert str(lab) in done.stdout
        for name, address in site.items():
            assert name in done.stdout
            assert address in done.stdout
    assert status(lab).ok
    assert status(name=TEST_LAB).ok


def test_up_again_changes_nothing(lab: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in (lab / "lab.json", lab / "inventory.yml")}
    pids = json.loads((lab / "lab.json").read_text())["machines"]
    report = up(HOSTS, lab, name=TEST_LAB)
    assert report.already_up
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert json.loads((lab / "lab.json").read_text())["machines"] == pids
    done = appliance("lab", "up", "--state", str(lab), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "already up" in done.stdout


def test_down_removes_everything(lab: Path, plan: LabPlan) -> None:
    base = ensure_lab_rootfs()
    done = appliance("lab", "down", "--state", str(lab), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "stopped ctrl1, gpu1, gw1" in done.stdout
    assert f"removed nft table inet {plan.slot.nft_table}" in done.stdout
    assert_nothing_of_the_lab_left(lab, plan.slot)
    assert base.is_dir()  # the cached base root filesystem is kept
    again = appliance("lab", "down", "--state", str(lab), timeout=120)
    assert again.returncode == 0
    assert "nothing to remove" in again.stdout
