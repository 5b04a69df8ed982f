"""Real databases for the admin service's tests: a SQLite file, a private PostgreSQL cluster."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.support import free_port


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise AssertionError("PostgreSQL is not installed: `make setup` installs it")
    return found[-1].parent


def postgres_available() -> bool:
    """Whether PostgreSQL's server programs are installed here."""
    return bool(list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))


@contextmanager
def postgres_cluster(*, durable: bool = False) -> Iterator[str]:
    """initdb a throwaway cluster on loopback (trust auth) and yield its URL; remove it after.

    Tests run it with fsync off, for speed; ``durable`` keeps PostgreSQL's defaults (fsync
    and synchronous_commit on: a commit returns once it is on disk), as a site runs it and
    as the benchmarks measure it."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="appliance-pg-"))
    shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()

    def as_postgres(*argv: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        as_postgres(*initdb, *([] if durable else ["--no-sync"]))
        sync = "-c fsync=on -c synchronous_commit=on" if durable else "-c fsync=off"
        as_postgres(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-k {root} -p {port} -c listen_addresses=127.0.0.1 {sync}",
            "start",
        )
        as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "appliance")
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
