"""Admin API on loopback: requests/s and p50/p99 for login and for listing 1,000 identities.

    python benchmarks/admin_api.py [--seconds 10] [--max-requests 2000] [--audit-rate 2000]

Starts `appliance admin serve` on a free loopback port with a fresh SQLite database,
seeds 1,000 identities, then times each operation for at most --seconds or
--max-requests, whichever comes first, while another process appends --audit-rate
audit records a second to the same database through the group-commit writer (a busy
site's event stream; 0 leaves the writer out). Login is deliberately slow: each one runs
PBKDF2-HMAC-SHA256 with 600,000 iterations. Creating an identity against the real
controller is not measured here (benchmarks/overlay.py does, with supplied programs).
Targets (issue 15): listing p99 under 50 ms, session lookup p50 under 2 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session

from appliance.admin.services.accounts import create_user
from appliance.audit.group_commit import AuditWriter
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Identity, IdentityKind, Role

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "benchmark-password-1"


def seed(url: str, count: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        create_user(session, "bench", Role.admin, password=PASSWORD, actor="benchmark")
        session.add_all(
            Identity(
                name=f"device-{i:04d}",
                kind=IdentityKind.device,
                ziti_id=f"z{i}",
                role_attributes=["engineering", "kind-device"],
                created_by="benchmark",
            )
            for i in range(count)
        )
        session.commit()


def busy_writer(url: str, rate: float, stop: Any, written: Any) -> None:
    """Append ``rate`` records a second, paced; a record counts once acknowledged."""

    def acknowledged(_: object) -> None:
        with written.get_lock():
            written.value += 1

    tick = 0.01
    per_tick = max(1, round(rate * tick))
    with AuditWriter(make_engine(url)) as writer:
        began = time.perf_counter()
        ticks = 0
        while not stop.is_set():
            for i in range(per_tick):
                writer.submit(
                    actor="ziti-events", action="overlay.session", target=f"s{i}"
                ).add_done_callback(acknowledged)
            ticks += 1
            lag = began + ticks * tick - time.perf_counter()
            if lag > 0:
                time.sleep(lag)


def measure(label: str, call: Callable[[], httpx.Response], seconds: float, limit: int) -> None:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < limit and time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        response = call()
        times.append(time.perf_counter() - t0)
        response.raise_for_status()
    wall = time.perf_counter() - start
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"{label:28} {len(times):6d} {len(times) / wall:9.1f} "
        f"{statistics.median(times) * 1000:9.1f} {p99 * 1000:9.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=2000)
    parser.add_argument("--audit-rate", type=float, default=2000.0, help="records/s beside")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-admin-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'admin.db'}"
        seed(url, 1000)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port_number = sock.getsockname()[1]
        env = {**os.environ, "APPLIANCE_ADMIN_PROFILE": "lab", "APPLIANCE_ADMIN_DATA_DIR": tmp}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance",
                "admin",
                "serve",
                "--db",
                url,
                "--port",
                str(port_number),
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port_number}"
        stop = multiprocessing.Event()
        written = multiprocessing.Value("l", 0)
        writer = multiprocessing.Process(
            target=busy_writer, args=(url, args.audit_rate, stop, written)
        )
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                for _ in range(300):
                    try:
                        if client.get("/api/v1/openapi.json").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                login = client.post(
                    "/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}
                )
                login.raise_for_status()
                if args.audit_rate:
                    writer.start()
                began, before = time.perf_counter(), written.value
                print(f"{'operation':28} {'count':>6} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}")
                measure(
                    "login (PBKDF2 600k)",
                    lambda: client.post(
                        "/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}
                    ),
                    args.seconds,
                    args.max_requests,
                )
                listed = client.get("/api/v1/identities").json()
                assert len(listed) == 1000, len(listed)
                measure(
                    "list 1,000 identities",
                    lambda: client.get("/api/v1/identities"),
                    args.seconds,
                    args.max_requests,
                )
                measure(
                    "whoami (session lookup)",
                    lambda: client.get("/api/v1/auth/me"),
                    args.seconds,
                    args.max_requests,
                )
                rate = (written.value - before) / (time.perf_counter() - began)
                print(
                    f"audit writer beside: {rate:,.0f} records/s acknowledged"
                    f" (asked {args.audit_rate:,.0f})"
                )
                print("targets: list 1,000 identities p99 < 50 ms; session lookup p50 < 2 ms")
        finally:
            stop.set()
            if writer.is_alive():
                writer.join(timeout=30)
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
