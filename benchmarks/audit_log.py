"""Audit log figures: durable appends with one and several writers, and export + verify
of 1,000,000 records next to `sha256sum` over the same bytes.

    python benchmarks/audit_log.py [--records 1000000] [--writers 4] [--seconds 10]

Appends go through the real writer (record_event, one commit each, SQLite with
synchronous=FULL) for at most --seconds per run. The large log is filled with the same
chained records in bulk inserts (this measures export and verify, not appends), then
exported to JSON Lines and verified offline.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from appliance.audit.checkpoint import load_or_create_key
from appliance.audit.export import export_log
from appliance.audit.format import GENESIS, Record, record_hash, timestamp
from appliance.audit.record import record_event
from appliance.audit.verify import verify_export
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, AuditHead, utcnow

EARLY = "2000-01-01T00:00:00+00:00"
LATE = "2100-01-01T00:00:00+00:00"


def _writer(url: str, seconds: float, name: str, counts: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    engine = make_engine(url)
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        with Session(engine) as session:
            record_event(session, actor=name, action="bench.append", target=str(done))
            session.commit()
        done += 1
    counts.put(done)


def append_rate(root: Path, writers: int, seconds: float) -> float:
    url = f"sqlite:///{root / f'append-{writers}.db'}"
    upgrade(make_engine(url))
    counts: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.Process(target=_writer, args=(url, seconds, f"w{i}", counts))
        for i in range(writers)
    ]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    wall = time.perf_counter() - start
    return sum(counts.get() for _ in procs) / wall


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
    args = parser.parse_args()
    from datetime import datetime

    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=Path.home()) as tmp:
        root = Path(tmp)
        one = append_rate(root, 1, args.seconds)
        many = append_rate(root, args.writers, args.seconds)
        print(f"durable appends, 1 writer:        {one:9.0f} records/s")
        print(f"durable appends, {args.writers} writers:       {many:9.0f} records/s")

        url = f"sqlite:///{root / 'big.db'}"
        engine = make_engine(url)
        upgrade(engine)
        start = time.perf_counter()
        fill(engine, args.records)
        fill_s = time.perf_counter() - start
        print(f"filled {args.records} chained records in {fill_s:.1f} s (bulk inserts)")

        out = root / "export.tar"
        start = time.perf_counter()
        with Session(engine) as session:
            export_log(
                session,
                load_or_create_key(root),
                since=datetime.fromisoformat(EARLY),
                until=datetime.fromisoformat(LATE),
                types=None,
                fmt="jsonl",
                out=out,
                actor="bench",
            )
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        summary = verify_export(out)
        verify_s = time.perf_counter() - start
        size = out.stat().st_size
        start = time.perf_counter()
        subprocess.run(["sha256sum", str(out)], check=True, stdout=subprocess.DEVNULL)
        sha_s = time.perf_counter() - start
        print(f"export of {summary.records} records: {export_s:6.1f} s ({size / 1e6:.0f} MB)")
        print(
            f"offline verify:                  {verify_s:6.1f} s "
            f"({summary.records / verify_s:,.0f} records/s)"
        )
        print(f"sha256sum over the same bytes:   {sha_s:6.2f} s")


if __name__ == "__main__":
    main()
