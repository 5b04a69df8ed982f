"""The multi-host lab, booted for real: ctrl1, gw1, gpu1 and the vendor outside.

One lab for the whole module (booting takes tens of seconds); the last test takes it
down and checks that nothing of it is left on the host.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.lab import down, status, up
from appliance.lab.plan import plan_lab
from appliance.lab.rootfs import ensure_lab_rootfs
from tests.lab.support import (
    appliance,
    assert_nothing_of_the_lab_left,
    default_gateway,
    ssh,
    tcp_probe,
    workstation_address,
)

HOSTS = ("ctrl1", "gw1", "gpu1")
PLAN = plan_lab(HOSTS)
SITE = {m.name: m.site_address for m in PLAN.machines}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A lab up for the module; taken down afterwards whatever happened."""
    state = tmp_path_factory.mktemp("lab") / "state"
    up(HOSTS, state)
    try:
        yield state
    finally:
        down(state)


def test_inventory_and_record(lab: Path) -> None:
    text = (lab / "inventory.yml").read_text()
    assert f"ansible_ssh_private_key_file: {lab}/id_ecdsa" in text
    assert oct((lab / "id_ecdsa").stat().st_mode & 0o777) == "0o600"
    assert "ecdsa-sha2-nistp384" in (lab / "id_ecdsa.pub").read_text()
    record = json.loads((lab / "lab.json").read_text())
    assert record["status"] == "up"
    assert {name: m["address"] for name, m in record["machines"].items()} == SITE


def test_ssh_into_each_machine_with_strict_host_keys(lab: Path) -> None:
    for name, address in SITE.items():
        done = ssh(lab, address, "hostname")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == name


def test_unknown_host_key_is_refused(lab: Path, tmp_path: Path) -> None:
    # Strict checking is really on: with another machine's key listed, SSH refuses.
    other = tmp_path / "state"
    other.mkdir()
    (other / "id_ecdsa").write_bytes((lab / "id_ecdsa").read_bytes())
    (other / "id_ecdsa").chmod(0o600)
    ctrl1_keys = [ln for ln in (lab / "known_hosts").read_text().splitlines() if "ctrl1" in ln]
    wrong = [ln.replace("10.231.0.10,ctrl1", "10.231.0.12,gpu1") for ln in ctrl1_keys]
    (other / "known_hosts").write_text("\n".join(wrong) + "\n")
    done = ssh(other, SITE["gpu1"], "true")
    assert done.returncode != 0
    assert "host key" in done.stderr.lower() or "identification" in done.stderr.lower()


def test_machines_are_distinct_hosts(lab: Path) -> None:
    ids = {ssh(lab, a, "cat /etc/machine-id").stdout.strip() for a in SITE.values()}
    assert len(ids) == len(SITE)
    keys = (lab / "known_hosts").read_text().splitlines()
    assert len({ln.split()[2] for ln in keys}) == len(keys)


def test_no_default_route_and_no_dns(lab: Path) -> None:
    for address in SITE.values():
        routes = ssh(lab, address, "ip route; echo ---; cat /etc/resolv.conf")
        assert routes.returncode == 0, routes.stderr
        route_text, _, resolv = routes.stdout.partition("---")
        assert "default" not in route_text
        assert "10.231.0.0/24 dev eth0" in route_text
        assert "nameserver" not in resolv
    gw1 = ssh(lab, SITE["gw1"], "ip -4 -o address show dev eth1").stdout
    assert "10.231.1.2/24" in gw1


def test_hosts_reach_each_other_on_the_site_network(lab: Path) -> None:
    for name, address in SITE.items():
        for other, target in SITE.items():
            if other != name:
                done = ssh(lab, address, f"ping -c 1 -W 5 {target}")
                assert done.returncode == 0, f"{name} cannot reach {other}: {done.stdout}"
        done = ssh(lab, address, "ping -c 1 -W 5 10.231.0.1")
        assert done.returncode == 0, f"{name} cannot reach the workstation: {done.stdout}"


def test_no_way_out_even_with_a_default_route(lab: Path) -> None:
    outside = [workstation_address(), default_gateway()]
    gpu1 = SITE["gpu1"]
    for target in outside:
        done = ssh(lab, gpu1, f"ping -c 1 -W 2 {target}")
        assert done.returncode != 0
        assert "unreachable" in (done.stdout + done.stderr).lower()
    # A host that adds a route out still gets nowhere: the workstation's firewall table.
    probe = "; ".join(f"ping -c 1 -W 2 {t} >/dev/null && echo reached {t}" for t in outside)
    done = ssh(
        lab,
        gpu1,
        f"ip route add default via 10.231.0.1 && {{ {probe}; }}; ip route del default",
    )
    assert "reached" not in done.stdout, done.stdout
    assert "default" not in ssh(lab, gpu1, "ip route").stdout


def test_vendor_reaches_only_the_gateway_outside_leg(lab: Path) -> None:
    site_targets = [*SITE.values(), "10.231.0.1", workstation_address()]
    found = tcp_probe("apl-vendor", [("10.231.1.2", 22)] + [(t, 22) for t in site_targets])
    assert found["10.231.1.2"] == "open"
    for target in site_targets:
        assert "unreachable" in found[target].lower(), (target, found[target])


def test_gateway_does_not_route_the_vendor_in(lab: Path) -> None:
    add = ["ip", "-n", "apl-vendor", "route", "add", "10.231.0.0/24", "via", "10.231.1.2"]
    subprocess.run(add, check=True)
    try:
        found = tcp_probe("apl-vendor", [(SITE["ctrl1"], 22), ("10.231.0.1", 22)])
    finally:
        subprocess.run([*add[:4], "del", *add[5:]], check=True)
    assert "open" not in found.values(), found


def test_podman_runs_in_gpu1(lab: Path) -> None:
    # No image can be pulled: make a tiny one from the machine's own `cat` and its libraries.
    script = (
        "set -e; d=$(mktemp -d); "
        'for f in /usr/bin/cat $(ldd /usr/bin/cat | grep -o "/[^ ]*"); do '
        'cp --parents "$f" "$d"; done; '
        'tar -C "$d" -c . | podman import -q - localhost/lab-probe:1 >/dev/null; '
        "podman run --rm --network host localhost/lab-probe:1 /usr/bin/cat /proc/net/dev"
    )
    done = ssh(lab, SITE["gpu1"], f"bash -c {shlex.quote(script)}", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "eth0:" in done.stdout  # the container sees the machine's own network


def test_status_command(lab: Path) -> None:
    done = appliance("lab", "status", "--state", str(lab), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, address in SITE.items():
        assert name in done.stdout
        assert address in done.stdout
    assert status(lab).ok


def test_up_again_changes_nothing(lab: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in (lab / "lab.json", lab / "inventory.yml")}
    pids = json.loads((lab / "lab.json").read_text())["machines"]
    report = up(HOSTS, lab)
    assert report.already_up
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert json.loads((lab / "lab.json").read_text())["machines"] == pids
    done = appliance("lab", "up", "--state", str(lab), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "already up" in done.stdout


def test_down_removes_everything(lab: Path) -> None:
    base = ensure_lab_rootfs()
    done = appliance("lab", "down", "--state", str(lab), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "stopped ctrl1, gpu1, gw1" in done.stdout
    assert_nothing_of_the_lab_left(lab)
    assert base.is_dir()  # the cached base root filesystem is kept
    again = appliance("lab", "down", "--state", str(lab), timeout=120)
    assert again.returncode == 0
    assert "nothing to remove" in again.stdout
