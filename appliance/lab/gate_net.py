"""A two-namespace network for the break-glass gate: the vendor on one side, the vendor
access host with a TCP echo listener on its edge port on the other. The integration tier
and benchmarks/breakglass.py run the real gate on it; needs root, nft and iproute2."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PORT",
    "SITE_ADDR",
    "SITE_IF",
    "GateNet",
    "echo_once",
    "gate_net",
    "hold_until_cut",
    "in_netns",
    "vendor_connect",
]

PORT = 3022
SITE_ADDR = "10.251.7.1"
VENDOR_ADDR = "10.251.7.2"
SITE_IF = "bgsite0"

# A TCP echo server: one thread per connection, so several probes can run side by side.
ECHO = """
import socket, socketserver, sys
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            while data := self.request.recv(4096):
                self.request.sendall(data)
        except OSError:
            pass  # the gate reset the connection: that is the point
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
Server((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""


@dataclass(frozen=True)
class GateNet:
    """The namespaces' names and how to run a command in the site's."""

    site: str
    vendor: str

    def site_cmd(self, *args: str) -> list[str]:
        """``args`` run inside the vendor access host's namespace."""
        return ["ip", "netns", "exec", self.site, *args]

    @property
    def nft(self) -> tuple[str, ...]:
        """nft as the gate runs it on the vendor access host."""
        return tuple(self.site_cmd("nft"))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def gate_net(tag: str) -> Iterator[GateNet]:
    """Make the namespaces, the veth pair and the echo listener; remove them after."""
    net = GateNet(f"bg-site-{tag}", f"bg-vendor-{tag}")
    for ns in (net.site, net.vendor):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        _ip("netns", "add", ns)
    echo = None
    try:
        _ip(
            "link",
            "add",
            SITE_IF,
            "netns",
            net.site,
            "type",
            "veth",
            "peer",
            "name",
            "bgvendor0",
            "netns",
            net.vendor,
        )
        for ns, ifname, addr in (
            (net.site, SITE_IF, SITE_ADDR),
            (net.vendor, "bgvendor0", VENDOR_ADDR),
        ):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", ifname)
            _ip("-n", ns, "link", "set", ifname, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        echo = subprocess.Popen(net.site_cmd(sys.executable, "-c", ECHO, SITE_ADDR, str(PORT)))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                net.site_cmd("ss", "-Htln", f"sport = :{PORT}"),
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.stdout.strip():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the echo listener did not start")
        yield net
    finally:
        if echo is not None:
            echo.kill()
            echo.wait()
        for ns in (net.site, net.vendor):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    # os.setns arrives with Python 3.12; libc's is the same call.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run this thread inside network namespace ``name`` (sockets made here stay there)."""
    with Path(f"/var/run/netns/{name}").open() as target, Path("/proc/self/ns/net").open() as home:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


def vendor_connect(net: GateNet, timeout: float = 2.0) -> socket.socket:
    """A TCP connection from the vendor to the vendor access host's listener."""
    with in_netns(net.vendor):
        sock = socket.create_connection((SITE_ADDR, PORT), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def echo_once(sock: socket.socket) -> None:
    """One round trip; raises OSError when the connection was cut."""
    sock.sendall(b"x")
    if sock.recv(1) != b"x":
        raise ConnectionResetError("the connection was closed")


def hold_until_cut(sock: socket.socket, *, limit: float, every: float = 0.02) -> float | None:
    """Round trips every ``every`` s; the time.time() the connection was cut, or None
    if it still worked after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            echo_once(sock)
        except OSError:
            return time.time()
        time.sleep(every)
    return None
