"""The vendor's side of a break-glass window in the lab: a connection held from the vendor
namespace through the vendor's local proxy, and what ctrl1 says of its gate.

Used by tests/lab/test_overlay_lab.py and tests/lab/test_soak_lab.py.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.integration.overlay import enroll
from tests.lab.overlay_site import Site, admin_calls
from tests.lab.support import ssh, tcp_probe

#: Runs in the vendor namespace: one keep-alive HTTP connection through the vendor's local
#: proxy to vLLM, asked for its models every 0.2 s. Prints "ready MODELS" once it answers,
#: then "dead EPOCH" when neither that connection nor a fresh one gets an answer.
HOLDER = r"""
import http.client, json, sys, time
port = int(sys.argv[1])
def ask(conn):
    conn.request("GET", "/v1/models")
    answer = conn.getresponse()
    body = answer.read()
    return answer.status == 200 and json.loads(body)
def fresh():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)
deadline = time.monotonic() + 120
while True:
    conn = fresh()
    try:
        models = ask(conn)
        if models:
            break
    except (OSError, http.client.HTTPException, ValueError):
        pass
    if time.monotonic() > deadline:
        print("never", flush=True)
        sys.exit(1)
    time.sleep(1)
print("ready " + json.dumps([m["id"] for m in models["data"]]), flush=True)
while True:
    try:
        if not ask(conn):
            break
    except (OSError, http.client.HTTPException):
        # A keep-alive the server closed is not the gate: one fresh connection decides.
        try:
            conn = fresh()
            if ask(conn):
                continue
        except (OSError, http.client.HTTPException):
            pass
        break
    time.sleep(0.2)
print(f"dead {time.time():.3f}", flush=True)
"""


@contextlib.contextmanager
def vendor_holds(namespace: str, port: int) -> Iterator[subprocess.Popen[str]]:
    """:data:`HOLDER` in ``namespace`` for the block, its lines on stdout."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", HOLDER, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def next_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line ``proc`` prints within ``timeout`` seconds, or "" if none comes."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""


def gate_diagnostics(site: Site) -> str:
    """What ctrl1 says of its gate and reaper, for a failure message."""
    shown = ssh(
        site.lab,
        site.address["ctrl1"],
        "nft list table inet appliance_breakglass; "
        "journalctl -u appliance-breakglass-reaper --no-pager -n 40",
    )
    return shown.stdout + shown.stderr


@dataclass(frozen=True)
class OpenWindow:
    """A window asked for and approved, and the engineer's identity enrolled through it."""

    id: int
    ends_at: float
    window: dict[str, Any]
    identity: Path


def open_window(site: Site, ask: dict[str, Any], approver: tuple[str, str]) -> OpenWindow:
    """Two people: the site's admin asks for ``ask``, a second admin ``approver`` (user,
    password; made here) approves; once the reaper opens the gate, the first engineer of
    ``ask`` enrolls from the vendor's side through it."""
    vendor, ctrl1 = site.plan.vendor.namespace, site.address["ctrl1"]
    user, password = approver
    made = admin_calls(site, [("POST", "/users", {"username": user, "role": "admin"})])
    assert made[0][0] == 201, made
    otp = str(made[0][1]["one_time_password"])
    admin_calls(site, [], user=user, password=otp, new_password=password)
    asked = admin_calls(site, [("POST", "/breakglass/windows", ask)])
    assert asked[0][0] == 201, asked
    wid = int(asked[0][1]["id"])
    approved = admin_calls(
        site,
        [("POST", f"/breakglass/windows/{wid}/approve", {"note": "lab"})],
        user=user,
        password=password,
    )
    assert approved[0][0] == 200, approved
    window = approved[0][1]["window"]
    [handover] = approved[0][1]["handovers"]
    # The reaper opens the gate at its next tick (a quarter of a second): the engineer's
    # first packets may come before it, as a person's would not.
    deadline = time.monotonic() + 15
    while tcp_probe(vendor, [(ctrl1, 1280)])[ctrl1] != "open":
        assert time.monotonic() < deadline, gate_diagnostics(site)
        time.sleep(0.2)
    # The engineer enrolls from the vendor's side (the controller's client API, through
    # the open gate).
    engineer = ask["engineers"][0]
    try:
        identity = enroll(
            site.ziti, str(handover["jwt"]), site.work / f"vendor-{engineer}.json", vendor
        )
    except AssertionError as refused:
        raise AssertionError(f"{refused}\n{gate_diagnostics(site)}") from None
    ends_at = datetime.fromisoformat(window["ends_at"]).timestamp()
    return OpenWindow(wid, ends_at, window, identity)
