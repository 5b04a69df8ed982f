"""A throwaway PostgreSQL cluster for benchmarks, durable as a site runs it.

Unlike the test clusters (fsync off, for speed), this one keeps PostgreSQL's defaults:
fsync on, synchronous_commit on, so a commit returns only once it is on disk.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _as_postgres(*argv: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def available() -> bool:
    """Whether PostgreSQL's server programs are installed here."""
    return bool(list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))


@contextmanager
def durable_cluster() -> Iterator[str]:
    """initdb a cluster on loopback with fsync and synchronous_commit on; yield its URL."""
    bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1].parent
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    shutil.chown(root, "postgres", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = root / "data"
    try:
        _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        _as_postgres(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-k {root} -p {port} -c listen_addresses=127.0.0.1 "
            "-c fsync=on -c synchronous_commit=on",
            "start",
        )
        _as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "appliance")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/appliance"
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
