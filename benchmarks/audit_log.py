"""Audit log figures: durable appends with one and several writers, and export + verify
of 1,000,000 records next to `sha256sum` over the same bytes.

    python benchmarks/audit_log.py [--records 1000000] [--writers 4] [--seconds 10]
                                   [--in-flight 256] [--no-postgres]

Appends are timed two ways for at most --seconds per run, each writer its own process:
the transactional path (record_event, one commit per record) and group commit (each
process's AuditWriter, with --in-flight appends waiting for their acknowledgement at any
time, as a busy event stream keeps them). Both on SQLite with synchronous=FULL and, where
PostgreSQL is installed, on a cluster with fsync and synchronous_commit on. A record counts
once it is acknowledged: durable and chained. The large log is filled with the same chained
records in bulk inserts (this measures export and verify, not appends), then exported to
JSON Lines and verified offline. Each figure is printed beside its target (issue 15).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from appliance.audit.checkpoint import load_or_create_key
from appliance.audit.format import GENESIS, Record, record_hash, timestamp
from appliance.audit.group_commit import AuditWriter
from appliance.audit.record import record_event
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, AuditHead, utcnow

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' PostgreSQL cluster, durable here
from tests.integration.databases import postgres_available, postgres_cluster  # noqa: E402

EARLY = "2000-01-01T00:00:00+00:00"
LATE = "2100-01-01T00:00:00+00:00"


def _writer(
    url: str,
    seconds: float,
    name: str,
    in_flight: int,
    start: Any,  # multiprocessing.Barrier
    counts: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """Append for ``seconds`` once every writer is ready; report (acknowledged, seconds).

    ``in_flight`` 0 is the transactional path (record_event, one commit each)."""
    engine = make_engine(url)
    writer = AuditWriter(engine) if in_flight else None
    waiting: deque[Future[Record]] = deque()
    done = 0
    start.wait()
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        if writer is None:
            with Session(engine) as session:
                record_event(session, actor=name, action="bench.append", target=str(done))
                session.commit()
            done += 1
            continue
        waiting.append(writer.submit(actor=name, action="bench.append", target=str(done)))
        if len(waiting) >= in_flight:
            waiting.popleft().result()
            done += 1
    while waiting:
        waiting.popleft().result()
        done += 1
    elapsed = time.perf_counter() - began
    if writer is not None:
        writer.close()
    counts.put((done, elapsed))


def append_rate(url: str, writers: int, seconds: float, in_flight: int) -> float:
    """Acknowledged records per second over all writers."""
    start = multiprocessing.Barrier(writers)
    counts: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.Process(
            target=_writer, args=(url, seconds, f"w{i}", in_flight, start, counts)
        )
        for i in range(writers)
    ]
    for proc in procs:
        proc.start()
    results = [counts.get() for _ in procs]
    for proc in procs:
        proc.join()
    return sum(done for done, _ in results) / max(elapsed for _, elapsed in results)


def append_figures(label: str, url_for: Callable[[str], str], args: argparse.Namespace) -> None:
    """Print the four append rates on one database."""
    print(f"durable appends on {label}:")
    for in_flight, path in ((0, "one commit per record"), (args.in_flight, "group commit")):
        for writers in (1, args.writers):
            url = url_for(f"{in_flight}-{writers}")
            rate = append_rate(url, writers, args.seconds, in_flight)
            target = "   (target >= 5,000 with 4 writers)" if in_flight and writers > 1 else ""
            print(f"  {path:22} {writers} writer(s): {rate:9.0f} records/s{target}")


def fill(engine: Engine, count: int) -> None:
    """The same chained records record_event writes, inserted in bulk (fast to set up)."""
    prev, now = GENESIS, utcnow()
    with Session(engine) as session:
        batch: list[dict[str, object]] = []
        for seq in range(1, count + 1):
            record = Record(
                seq=seq,
                at=timestamp(now),
                actor=f"user{seq % 50}",
                action="identity.create",
                target=f"device-{seq}",
                outcome="ok",
                client="127.0.0.1",
                details={"attributes": ["engineering"]},
                prev_hash=prev,
            )
            prev = record_hash(record)
            batch.append({**record.fields(), "at": now, "hash": prev})
            if len(batch) == 10_000 or seq == count:
                session.execute(insert(AuditEvent), batch)
                batch = []
        session.merge(AuditHead(id=1, seq=count, hash=prev))
        session.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--no-postgres", dest="postgres", action="store_false")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=Path.home()) as tmp:
        root = Path(tmp)

        def sqlite_log(name: str) -> str:
            url = f"sqlite:///{root / f'append-{name}.db'}"
            upgrade(make_engine(url))
            return url

        append_figures("SQLite (synchronous=FULL)", sqlite_log, args)
        if args.postgres and postgres_available():
            with postgres_cluster(durable=True) as pg_url:
                upgrade(make_engine(pg_url))
                append_figures(
                    "PostgreSQL (fsync, synchronous_commit on)", lambda _name: pg_url, args
                )
        elif args.postgres:
            print("durable appends on PostgreSQL: not measured, PostgreSQL is not installed")

        url = f"sqlite:///{root / 'big.db'}"
        engine = make_engine(url)
        upgrade(engine)
        start = time.perf_counter()
        fill(engine, args.records)
        fill_s = time.perf_counter() - start
        print(f"filled {args.records} chained records in {fill_s:.1f} s (bulk inserts)")

        # Export and verify as the auditor runs them: the CLI, each its own process.
        load_or_create_key(root)  # the service's key, where --data-dir finds it
        out = root / "export.tar"
        export_s, _ = _timed_cli(
            "audit",
            "export",
            "--since",
            EARLY,
            "--until",
            LATE,
            "--out",
            str(out),
            "--data-dir",
            str(root),
            "--db",
            url,
        )
        verify_s, verify_rss = _timed_cli("audit", "verify", str(out))
        size = out.stat().st_size
        sha_s, _ = _timed(["sha256sum", str(out)])
        records = args.records
        print(
            f"export of {records} records:   {export_s:6.1f} s ({size / 1e6:.0f} MB, "
            "`appliance audit export`)   (target <= 10 s for 1,000,000)"
        )
        print(
            f"offline verify:                  {verify_s:6.1f} s "
            f"({records / verify_s:,.0f} records/s, `appliance audit verify`)   "
            f"(target <= 2x sha256sum: {verify_s / sha_s:.1f}x)"
        )
        print(f"sha256sum over the same bytes:   {sha_s:6.2f} s")
        print(
            f"verify's peak memory:            {verify_rss / 2**20:6.0f} MiB   "
            "(target < 300 MiB for 1,000,000)"
        )


def _timed_cli(*args: str) -> tuple[float, int]:
    return _timed([sys.executable, "-m", "appliance", *args])


def _timed(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident bytes of one command (its own rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"{' '.join(argv[:4])} failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return seconds, usage.ru_maxrss * 1024


if __name__ == "__main__":
    main()
