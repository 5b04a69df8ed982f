"""How fast a break-glass window's end cuts the vendor's open connection.

Run as root (network namespaces): ``python benchmarks/breakglass.py [--windows 20]``.

Two paths, each over N windows, on a vendor connection that does a round trip every 5 ms:

* end time -> cut: the gate is set open until a whole-second end, then nothing runs; the
  kernel alone cuts the connection (``meta time`` and the set element's timer).
* revoke -> cut: the decision is made as the API makes it (committed by
  ``appliance.breakglass.windows.end``), and the real reaper process (``appliance admin
  reaper``, default tick) closes the gate.

The controller's own path (identity deleted, its circuits torn down by the routers) needs
OpenZiti, which cannot be built on this machine, and is not measured here.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from latency import percentiles  # benchmarks/latency.py, beside this script
from sqlalchemy.orm import Session

from appliance.breakglass.gate import GateConfig, GateState, apply_gate
from appliance.breakglass.windows import end as end_window
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import BreakglassWindow
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

REPO = Path(__file__).resolve().parents[1]
CONFIG = GateConfig((SITE_IF,), (PORT,))


def end_time_path(net: GateNet, windows: int) -> list[float]:
    latencies = []
    for _ in range(windows):
        end = math.floor(time.time()) + 2
        apply_gate(
            CONFIG,
            GateState(datetime.fromtimestamp(end, UTC), end - time.time()),
            nft=net.nft,
        )
        sock = vendor_connect(net)
        echo_once(sock)
        cut = hold_until_cut(sock, limit=10, every=0.005)
        sock.close()
        if cut is None:
            raise SystemExit("the connection outlived its window")
        latencies.append(cut - end)
    return latencies


def _hold(sock: socket.socket, result: list[float | None]) -> None:
    result.append(hold_until_cut(sock, limit=10, every=0.005))


def revoke_path(net: GateNet, windows: int, root: Path) -> list[float]:
    url = f"sqlite:///{root / 'admin.db'}"
    upgrade(make_engine(url))
    env = {
        **os.environ,
        "APPLIANCE_ADMIN_PROFILE": "test",
        "APPLIANCE_ADMIN_DATA_DIR": str(root),
        "APPLIANCE_ADMIN_BREAKGLASS_GATE_INTERFACES": f'["{SITE_IF}"]',
        "APPLIANCE_ADMIN_BREAKGLASS_GATE_PORTS": f"[{PORT}]",
    }
    apply_gate(CONFIG, GateState(), nft=net.nft)
    reaper = subprocess.Popen(
        net.site_cmd(sys.executable, "-m", "appliance", "admin", "reaper", "--db", url),
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latencies = []
    try:
        for _ in range(windows):
            wid = add_active_window(url, 600)
            sock = None
            deadline = time.monotonic() + 30
            while sock is None and time.monotonic() < deadline:
                try:
                    sock = vendor_connect(net, timeout=1)
                except OSError:
                    time.sleep(0.05)
            if sock is None:
                raise SystemExit("the reaper never opened the gate")
            time.sleep(0.3 + (len(latencies) % 4) * 0.07)  # revoke at varied tick phases
            result: list[float | None] = []
            holder = threading.Thread(target=_hold, args=(sock, result))
            holder.start()
            with Session(make_engine(url), expire_on_commit=False) as db:
                window = db.get(BreakglassWindow, wid)
                assert window is not None
                decided = time.time()
                end_window(db, window, how="revoked", actor="bench", reason="bench", client="")
            holder.join()
            sock.close()
            if not result or result[0] is None:
                raise SystemExit("a revoked window's connection was not cut")
            latencies.append(result[0] - decided)
    finally:
        reaper.terminate()
        reaper.wait(timeout=20)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark makes network namespaces")
    with gate_net("bench") as net, tempfile.TemporaryDirectory(prefix="bg-bench-") as tmp:
        ended = end_time_path(net, args.windows)
        print(f"end time -> connection cut (kernel only):  {percentiles(ended)}")
        revoked = revoke_path(net, args.windows, Path(tmp))
        print(f"revoke   -> connection cut (reaper+gate):  {percentiles(revoked)}")


if __name__ == "__main__":
    main()
