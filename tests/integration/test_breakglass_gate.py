"""The break-glass gate in a real kernel: the vendor's connection works while a window is
open and is cut when it ends, with no appliance process running, and setting the wall
clock back cannot keep it open.

Two network namespaces stand in for the vendor and the vendor access host (an echo
listener on the edge port). The vendor access router itself is OpenZiti, which cannot be
built here; the gate guards its port whatever listens there.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from appliance.breakglass.gate import TABLE, GateConfig, GateState, apply_gate
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, BreakglassWindow, WindowState
from appliance.lab.gate_net import (
    PORT,
    SITE_IF,
    GateNet,
    echo_once,
    gate_net,
    hold_until_cut,
    vendor_connect,
)
from appliance.lab.windows import add_active_window
from tests.integration.firewall_rules import load_appliance_firewall

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("nft") is None,
        reason="needs root and nft (network namespaces)",
    ),
]
REPO = Path(__file__).resolve().parents[2]
CONFIG = GateConfig((SITE_IF,), (PORT,))


@pytest.fixture
def net() -> Iterator[GateNet]:
    with gate_net("it") as made:
        yield made


def gate(net: GateNet, state: GateState) -> None:
    apply_gate(CONFIG, state, nft=net.nft)


def test_closed_gate_refuses_the_vendor_and_lets_the_site_in(net: GateNet) -> None:
    gate(net, GateState())
    with pytest.raises(ConnectionRefusedError):  # answered with a reset, at once
        vendor_connect(net)
    # Only the vendor-facing interface is gated: the host's own traffic to the port is not.
    inside = subprocess.run(
        net.site_cmd(
            sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 1), 1)"
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "ConnectionRefusedError" in inside.stderr  # nothing on loopback:1, not a timeout


def test_open_window_is_cut_at_its_end_by_the_kernel_alone(net: GateNet) -> None:
    end = datetime.now(UTC) + timedelta(seconds=3)
    gate(net, GateState(end, 3.0))
    sock = vendor_connect(net)
    echo_once(sock)
    cut = hold_until_cut(sock, limit=10)  # no appliance process runs from here on
    assert cut is not None, "the connection outlived the window"
    # Not before its end; the gate takes whole seconds, rounded down, so up to 1 s early.
    assert cut >= math.floor(end.timestamp()) - 0.05
    with pytest.raises(ConnectionRefusedError):
        vendor_connect(net)


def test_the_firewall_opens_the_vendor_leg_only_to_what_the_gate_let_in(net: GateNet) -> None:
    load_appliance_firewall(
        net.nft, site_networks=["192.0.2.0/24"], vendor_interfaces=[SITE_IF], vendor_ports=[PORT]
    )
    # No gate yet (the reaper has not run): the vendor leg is shut, not open.
    with pytest.raises(TimeoutError):
        vendor_connect(net, timeout=2)
    gate(net, GateState(datetime.now(UTC) + timedelta(seconds=30), 30.0))
    sock = vendor_connect(net)
    echo_once(sock)  # the replies leave too (the firewall's output allows established)
    gate(net, GateState())
    assert hold_until_cut(sock, limit=10) is not None
    with pytest.raises(ConnectionRefusedError):
        vendor_connect(net)


def test_wall_clock_set_back_does_not_keep_the_gate_open(net: GateNet) -> None:
    # A wall-clock end an hour away is what a clock set back an hour looks like to
    # ``meta time``; the set element's timer (2 s, on the kernel's clock) still ends it.
    gate(net, GateState(datetime.now(UTC) + timedelta(hours=1), 2.0))
    sock = vendor_connect(net)
    echo_once(sock)
    started = time.monotonic()
    assert hold_until_cut(sock, limit=10) is not None
    assert time.monotonic() - started < 10
    listed = subprocess.run(
        net.site_cmd("nft", "list", "table", "inet", TABLE),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "meta time <" in listed and "@open" in listed


@pytest.fixture
def admin_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    return url


def reaper(net: GateNet, url: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "APPLIANCE_ADMIN_PROFILE": "test",
        "APPLIANCE_ADMIN_DATA_DIR": str(tmp_path),
        "APPLIANCE_ADMIN_BREAKGLASS_GATE_INTERFACES": f'["{SITE_IF}"]',
        "APPLIANCE_ADMIN_BREAKGLASS_GATE_PORTS": f"[{PORT}]",
        "APPLIANCE_ADMIN_REAPER_INTERVAL_SECONDS": "0.2",
    }
    return subprocess.Popen(
        net.site_cmd(sys.executable, "-m", "appliance", "admin", "reaper", "--db", url),
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_open(net: GateNet, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            vendor_connect(net, timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the reaper did not open the gate for the active window")


def test_reaper_killed_mid_window_the_window_still_ends_on_time(
    net: GateNet, admin_db: str, tmp_path: Path
) -> None:
    gate(net, GateState())  # closed, as the role leaves it at boot
    wid = add_active_window(admin_db, 8, ziti_objects={"identities": {"eve": "z-eve"}})
    proc = reaper(net, admin_db, tmp_path)
    try:
        wait_open(net)
        sock = vendor_connect(net)
        echo_once(sock)
    finally:
        proc.send_signal(signal.SIGKILL)  # no admin service, no reaper: only the kernel
        proc.wait()
    with Session(make_engine(admin_db)) as db:
        window = db.get(BreakglassWindow, wid)
        assert window is not None and window.ends_at is not None
        ends_at = window.ends_at
    cut = hold_until_cut(sock, limit=20)
    assert cut is not None and cut >= math.floor(ends_at.timestamp()) - 0.05
    # The reaper, back, records what the kernel already enforced.
    proc = reaper(net, admin_db, tmp_path)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with Session(make_engine(admin_db)) as db:
                window = db.get(BreakglassWindow, wid)
                if window is not None and window.state == WindowState.expired:
                    break
            time.sleep(0.2)
        assert window is not None and window.state == WindowState.expired
        with Session(make_engine(admin_db)) as db:
            actions = [e.action for e in db.query(AuditEvent).order_by(AuditEvent.seq)]
        assert actions == ["breakglass.expire"]
        with pytest.raises(ConnectionRefusedError):
            vendor_connect(net)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out  # SIGTERM is a clean stop
    assert "gate closed" in out
