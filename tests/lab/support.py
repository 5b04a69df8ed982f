"""Helpers for lab tests: commands inside machines and namespaces, and what is left."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from appliance.lab.admin_api import admin_calls
from appliance.lab.machines import find_machine_processes
from appliance.lab.network import scan_network
from appliance.lab.plan import LabPlan, Slot
from appliance.lab.ssh import SshAccess

REPO = Path(__file__).resolve().parents[2]


def ssh(
    state: Path, address: str, command: str, *, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as root on a lab machine, host key checked against known_hosts."""
    access = SshAccess(key=state / "id_ecdsa", known_hosts=state / "known_hosts")
    return subprocess.run(
        access.argv(address, command),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
    )


def admin_api(
    state: Path,
    address: str,
    password: str,
    calls: list[tuple[str, str, object]],
    *,
    new_password: str | None = None,
    user: str = "admin",
) -> list[list[Any]]:
    """[status, body] for each call of the admin API on the lab machine that runs the
    service, as ``user`` (the site's first admin unless said; ``new_password``: its
    one-time password is changed first)."""
    return admin_calls(
        lambda command, stdin: ssh(state, address, command, stdin=stdin),
        user,
        password,
        calls,
        new_password=new_password,
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


def assert_nothing_of_the_lab_left(state: Path, slot: Slot) -> None:
    """No namespace, link, firewall table or machine of lab ``slot``, and no state directory.

    Only that lab's: other labs on the host (the demo's) are none of the test's business.
    """
    net = scan_network().of(slot)
    assert net.namespaces == ()
    assert net.links == ()
    assert net.firewall is None
    assert find_machine_processes(prefix=slot.prefix) == {}
    assert not state.exists()
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [n for n in namespaces if n.startswith(slot.prefix)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert not [ln for ln in links.splitlines() if ln.split()[1].startswith(slot.prefix)]
    tables = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert slot.nft_table not in tables


def assert_lab_intact(state: Path, plan: LabPlan) -> None:
    """Every piece of the lab ``plan`` is there and every machine answers SSH."""
    net = scan_network().of(plan.slot)
    assert set(net.namespaces) == set(plan.namespaces)
    assert {plan.slot.site_bridge, plan.slot.ext_bridge} <= set(net.links)
    assert net.firewall == plan.slot.nft_table
    assert sorted(find_machine_processes(prefix=plan.slot.prefix).values()) == sorted(
        m.namespace for m in plan.machines
    )
    for machine in plan.machines:
        done = ssh(state, machine.site_address, "hostname")
        assert done.returncode == 0, f"{machine.name}: {done.stderr}"
        assert done.stdout.strip() == machine.name


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (ansible-runner starts its own sessions)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything it started, as a crash of the workstation would."""
    tree = descendants(pid)
    for each in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGSTOP)  # nothing forks away while we collect
    for each in descendants(pid) + tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)


_SCAN = r"""
import errno, json, resource, select, socket, sys, time

hosts = sys.argv[1:]
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
pairs = [(h, p) for h in hosts for p in range(1, 65536)]
found = {h: [] for h in hosts}
for start in range(0, len(pairs), 16000):
    poller, pending = select.epoll(), {}
    for host, port in pairs[start:start + 16000]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if s.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
            s.close()
            continue
        pending[s.fileno()] = (s, host, port)
        poller.register(s.fileno(), select.EPOLLOUT | select.EPOLLERR)
    deadline = time.monotonic() + 1.5
    while pending and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left):
            s, host, port = pending.pop(fd)
            poller.unregister(fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                found[host].append(port)
            s.close()
    for s, _, _ in pending.values():
        s.close()
    poller.close()
print(json.dumps(found))
"""


def tcp_scan(hosts: list[str], namespace: str | None = None) -> dict[str, list[int]]:
    """Every TCP port of each host that accepts a connection (from ``namespace``, or here).

    Dropped packets cost a 1.5 s wait per batch of 16,000 ports, so a full scan of three
    hosts takes under a minute.
    """
    return _run_scan(_SCAN, hosts, namespace)


def _run_scan(script: str, hosts: list[str], namespace: str | None) -> dict[str, list[int]]:
    """Run a scanner ``script`` over ``hosts`` (inside ``namespace`` when given): its JSON."""
    argv = [sys.executable, "-c", script, *hosts]
    if namespace is not None:
        argv = ["ip", "netns", "exec", namespace, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    ports: dict[str, list[int]] = json.loads(done.stdout)
    return ports


_UDP_SCAN = r"""
import json, select, socket, sys, time

hosts = sys.argv[1:]
answered = {h: set() for h in hosts}
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
sock.setblocking(False)
# A DNS query's header and an empty question: enough for many services to say something.
probe = bytes.fromhex("12340100000100000000000000000100 01".replace(" ", ""))

def collect(until):
    while (left := until - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return
        try:
            while True:
                _, (host, port) = sock.recvfrom(65535)
                if host in answered:
                    answered[host].add(port)
        except BlockingIOError:
            pass

for start in range(1, 65536, 4096):
    for host in hosts:
        for port in range(start, min(start + 4096, 65536)):
            while True:
                try:
                    sock.sendto(probe, (host, port))
                    break
                except BlockingIOError:
                    collect(time.monotonic() + 0.01)
                except OSError:
                    break  # unreachable: nothing to hear from
    collect(time.monotonic() + 0.05)
collect(time.monotonic() + 2)
print(json.dumps({h: sorted(p) for h, p in answered.items()}))
"""


def udp_scan(hosts: list[str], namespace: str | None = None) -> dict[str, list[int]]:
    """Every UDP port of each host that answers a datagram (from ``namespace``, or here).

    A firewall that drops says nothing, so this finds what would talk back, not what is
    filtered: ``ss -uln`` inside each host is the other half of the proof.
    """
    return _run_scan(_UDP_SCAN, hosts, namespace)
