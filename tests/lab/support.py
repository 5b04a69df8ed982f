"""Helpers for lab tests: commands inside machines and namespaces, and what is left."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from appliance.lab.machines import find_machine_processes
from appliance.lab.network import network_state
from appliance.lab.ssh import SshAccess

REPO = Path(__file__).resolve().parents[2]


def ssh(
    state: Path, address: str, command: str, *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as root on a lab machine, host key checked against known_hosts."""
    access = SshAccess(key=state / "id_ecdsa", known_hosts=state / "known_hosts")
    return subprocess.run(
        access.argv(address, command),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def in_namespace(
    namespace: str, *argv: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` on the host inside network namespace ``namespace``."""
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tcp_probe(namespace: str, targets: list[tuple[str, int]]) -> dict[str, str]:
    """From ``namespace``, try a TCP connection to each target: address → "open" or the error."""
    script = (
        "import json, socket, sys\n"
        "out = {}\n"
        "for host, port in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=3).close()\n"
        "        out[host] = 'open'\n"
        "    except OSError as exc:\n"
        "        out[host] = type(exc).__name__ + ': ' + str(exc)\n"
        "print(json.dumps(out))\n"
    )
    done = in_namespace(namespace, sys.executable, "-c", script, json.dumps(targets))
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


def appliance(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the ``appliance`` command line as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def workstation_address() -> str:
    """The workstation's own address on its default-route interface (not the lab's)."""
    routes = json.loads(
        subprocess.run(
            ["ip", "-json", "route", "show", "default"], capture_output=True, text=True, check=True
        ).stdout
    )
    device = routes[0]["dev"]
    links = json.loads(
        subprocess.run(
            ["ip", "-json", "-4", "address", "show", "dev", device],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return str(links[0]["addr_info"][0]["local"])


def default_gateway() -> str:
    """The workstation's default gateway: the way out of this machine."""
    routes = json.loads(
        subprocess.run(
            ["ip", "-json", "route", "show", "default"], capture_output=True, text=True, check=True
        ).stdout
    )
    return str(routes[0]["gateway"])


def assert_nothing_of_the_lab_left(state: Path) -> None:
    """No lab namespace, link, firewall table, machine process or state directory."""
    net = network_state()
    assert net.namespaces == ()
    assert net.links == ()
    assert not net.firewall
    assert find_machine_processes() == {}
    assert not state.exists()
    assert (
        "apl-"
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert (
        "apl-"
        not in subprocess.run(["ip", "link"], capture_output=True, text=True, check=True).stdout
    )
    tables = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout
    assert "appliance_lab" not in tables
