"""Sealed, measured: the appliance firewall in a real kernel drops and counts what a host
sends to an address outside the site, and leaves the site's own traffic alone.

The namespace pair of the break-glass gate tests stands in for a site host and its link
(the site network is the /30 between them; a default route points out of it, as a
misconfigured host's would).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from appliance.install.health import outbound_refused
from appliance.lab.gate_net import GateNet, gate_net
from tests.integration.firewall_rules import load_appliance_firewall

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("nft") is None,
        reason="needs root and nft (network namespaces)",
    ),
]

#: Documentation addresses (RFC 5737): outside any site, never routed anywhere real.
OUTSIDE_TCP = ("198.51.100.7", 443)
OUTSIDE_DNS = ("203.0.113.53", 53)
#: The other end of the site link, in the site network; nothing listens on port 9.
INSIDE = ("10.251.7.2", 9)

# Each probe prints the errno its send met (or "timeout"): the firewall answers a process
# that tries to leave the site at once, so nothing on a host hangs on it.
TCP_PROBE = """
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
except TimeoutError:
    print("timeout")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, exc.errno))
"""
UDP_PROBE = """
import errno, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b"\\x12\\x34 a query", (sys.argv[1], int(sys.argv[2])))
    print("sent")  # not expected: the firewall refuses it in the send itself
except OSError as exc:
    print(errno.errorcode.get(exc.errno, exc.errno))
"""


@pytest.fixture
def host() -> Iterator[GateNet]:
    with gate_net("seal") as net:
        subprocess.run(
            net.site_cmd("ip", "route", "add", "default", "via", INSIDE[0]),
            check=True,
            capture_output=True,
        )
        load_appliance_firewall(net.nft, site_networks=["10.251.7.0/30"])
        yield net


def _run(net: GateNet, probe: str, address: tuple[str, int]) -> str:
    done = subprocess.run(
        net.site_cmd(sys.executable, "-c", probe, address[0], str(address[1])),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def _refused(net: GateNet) -> tuple[int, int] | None:
    listed = subprocess.run(
        net.site_cmd("nft", "-j", "list", "counter", "inet", "appliance", "outbound_refused"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return outbound_refused(json.loads(listed))


def test_nothing_leaves_the_site_and_every_try_is_counted(host: GateNet) -> None:
    assert _refused(host) == (0, 0)
    # Inside the site: the peer answers (a reset: nothing listens), nothing is counted.
    assert _run(host, TCP_PROBE, INSIDE) == "ECONNREFUSED"
    assert _refused(host) == (0, 0)
    # Outside: refused by the host's own firewall at once, not timed out, and counted.
    assert _run(host, TCP_PROBE, OUTSIDE_TCP) == "EHOSTUNREACH"  # admin-prohibited
    assert _run(host, UDP_PROBE, OUTSIDE_DNS) == "EPERM"
    # One SYN (60 bytes) and one datagram (28 + 10): each try counted once, never resent.
    assert _refused(host) == (2, 60 + 38)


def test_reloading_an_unchanged_ruleset_is_the_only_thing_that_resets_the_count(
    host: GateNet,
) -> None:
    _run(host, TCP_PROBE, OUTSIDE_TCP)
    assert _refused(host) == (1, 60)  # the SYN, refused at once: never sent again
    load_appliance_firewall(host.nft, site_networks=["10.251.7.0/30"])
    assert _refused(host) == (0, 0)
