"""The overlay's edge ports in a real kernel: open while their program listens; while it
is down, a client is refused at once but another router or controller of the site meets
silence (a dropped SYN), so that a router redialing a stopped controller waits out each
try instead of failing it at once and backing off for tens of seconds.

The gate tests' namespace pair stands in for a site host (with its echo listener on
3022) and the one dialing it on the site network, a peer or a client.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from appliance.lab.gate_net import PORT, SITE_ADDR, GateNet, gate_net, in_netns
from tests.integration.firewall_rules import load_appliance_firewall

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("nft") is None,
        reason="needs root and nft (network namespaces)",
    ),
]

#: An edge port with nothing listening on it, as the controller's while it is stopped.
DOWN_PORT = 3099
#: Not an edge port at all.
CLOSED_PORT = 9


#: The dialing side's address (gate_net's vendor end), in the site network.
DIALER = "10.251.7.2"


@pytest.fixture
def host() -> Iterator[GateNet]:
    """The dialing side is another overlay host of the site (a router, a controller)."""
    with gate_net("edge") as net:
        load_appliance_firewall(
            net.nft,
            site_networks=["10.251.7.0/30"],
            edge_ports=[PORT, DOWN_PORT],
            overlay_peers=["10.251.7.1", DIALER],
        )
        yield net


def _dial(net: GateNet, port: int) -> str:
    """What a peer on the site network meets dialing ``port``: connected, refused (a
    reset) or a timeout (the SYN was dropped)."""
    with in_netns(net.vendor):
        try:
            socket.create_connection((SITE_ADDR, port), timeout=1.5).close()
        except TimeoutError:
            return "timeout"
        except ConnectionRefusedError:
            return "refused"
    return "connected"


def test_to_a_peer_an_edge_port_answers_only_while_its_program_listens(host: GateNet) -> None:
    assert _dial(host, PORT) == "connected"
    # Down: the SYN is dropped, so the dialer waits out its own timeout, as it would for
    # a host that is away, instead of counting a refusal at once.
    assert _dial(host, DOWN_PORT) == "timeout"
    assert _dial(host, CLOSED_PORT) == "timeout"
    listener = subprocess.Popen(
        host.site_cmd(
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            "s = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
            "time.sleep(60)",
            SITE_ADDR,
            str(DOWN_PORT),
        )
    )
    try:
        deadline = time.monotonic() + 10
        while _dial(host, DOWN_PORT) != "connected":
            assert time.monotonic() < deadline, "the port stayed silent with a listener on it"
            assert listener.poll() is None, "the listener exited"
    finally:
        listener.kill()
        listener.wait()
    # Back down: silent again, with no rule changed in between.
    assert _dial(host, DOWN_PORT) == "timeout"


def test_a_client_is_refused_at_once_while_the_program_is_down(host: GateNet) -> None:
    load_appliance_firewall(host.nft, site_networks=["10.251.7.0/30"], edge_ports=[PORT, DOWN_PORT])
    assert _dial(host, PORT) == "connected"
    assert _dial(host, DOWN_PORT) == "refused"  # a client's request fails now, not later
    assert _dial(host, CLOSED_PORT) == "timeout"  # not an edge port: nothing answers


def test_a_dialer_outside_the_site_networks_is_not_let_in(host: GateNet) -> None:
    load_appliance_firewall(host.nft, site_networks=["10.9.9.0/24"], edge_ports=[PORT])
    assert _dial(host, PORT) == "timeout"
