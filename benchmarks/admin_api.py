"""Admin API on loopback: requests/s and p50/p99 for login and for listing 1,000 identities.

    python benchmarks/admin_api.py [--seconds 10] [--max-requests 2000]

Starts `appliance admin serve` on a free loopback port with a fresh SQLite database,
seeds 1,000 identities, then times each operation for at most --seconds or
--max-requests, whichever comes first. Login is deliberately slow: each one runs
PBKDF2-HMAC-SHA256 with 600,000 iterations. Creating an identity against the real
controller is not measured: the controller cannot be built on this machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy.orm import Session

from appliance.admin.services.accounts import create_user
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
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
