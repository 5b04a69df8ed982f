"""The vendor's side of a break-glass window in the lab: a connection held from the vendor
namespace through the vendor's local proxy, and what ctrl1 says of its gate.

Used by tests/lab/test_overlay_lab.py and tests/lab/test_soak_lab.py.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
from collections.abc import Iterator

from tests.lab.overlay_site import Site
from tests.lab.support import ssh

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
