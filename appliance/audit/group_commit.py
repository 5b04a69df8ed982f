"""Group commit: many waiting appends made durable by one commit (one fsync).

A process keeps one :class:`AuditWriter`. Callers hand it events from any thread and wait
on a future; its single writer thread takes every event waiting, chains them onto the
log's head and commits them in one transaction. A future resolves only after that commit
returned, so an acknowledged record is durable (SQLite synchronous=FULL, PostgreSQL
synchronous_commit on) and chained. While one batch is being committed the next one
gathers, so the batch grows with the load and a lone caller waits for one commit only.

Across processes the head row serialises the batches exactly as it serialises
``record_event``: on SQLite the transaction begins IMMEDIATE (the write lock) before the
head is read; on PostgreSQL the head row is read FOR UPDATE. The chain stays one sequence.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from appliance.audit.format import GENESIS, Record, canonical_bytes
from appliance.audit.record import chained_record
from appliance.db.models import AuditEvent, AuditHead, utcnow
from appliance.errors import ApplianceError

__all__ = ["AuditWriter", "AuditWriterClosedError"]

#: The most records one transaction commits: bounds the time the write lock is held.
MAX_BATCH = 2000


class AuditWriterClosedError(ApplianceError):
    """An append was handed to a writer that was already closed."""


@dataclass
class _Pending:
    fields: dict[str, Any]
    future: Future[Record] = field(default_factory=Future)


_STOP = object()


class AuditWriter:
    """The process's batching audit writer: one thread, one connection at a time."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def submit(
        self,
        *,
        actor: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
        client: str = "",
    ) -> Future[Record]:
        """Queue an event; the future gives its record once the record is durable.

        ``details`` that JSON cannot hold raise TypeError here, in the caller, rather
        than fail the batch it would have joined.
        """
        canonical_bytes({"details": details or {}})
        pending = _Pending(
            {
                "actor": actor,
                "action": action,
                "target": target,
                "outcome": outcome,
                "details": details,
                "client": client,
            }
        )
        with self._lock:
            if self._closed:
                raise AuditWriterClosedError("the audit writer is closed: nothing was recorded")
            self._queue.put(pending)
        return pending.future

    def append(self, **event: Any) -> Record:
        """Record an event and return its record once it is durable (blocks until then)."""
        return self.submit(**event).result()

    def close(self) -> None:
        """Commit everything already submitted, then stop the writer thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def __enter__(self) -> AuditWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._commit([p for p in batch if isinstance(p, _Pending)])

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._engine.begin() as connection:
                records = _append_batch(connection, [p.fields for p in batch])
        except BaseException as exc:  # nothing of this batch was committed: every caller hears
            for pending in batch:
                pending.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for pending, record in zip(batch, records, strict=True):
            pending.future.set_result(record)


def _append_batch(connection: Connection, events: list[dict[str, Any]]) -> list[Record]:
    """Chain ``events`` onto the locked head in this transaction; the caller commits."""
    seq, prev = _lock_head(connection)
    now = utcnow()
    records = []
    for event in events:
        record = chained_record(seq + 1, prev, now=now, **event)
        records.append(record)
        seq, prev = record.seq, record.hash
    connection.execute(
        insert(AuditEvent), [{**r.fields(), "at": now, "hash": r.hash} for r in records]
    )
    connection.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=seq, hash=prev))
    return records


def _lock_head(connection: Connection) -> tuple[int, str]:
    """The head (seq, hash), locked until the transaction ends; made when the log is new."""
    locked = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
    head = connection.execute(locked).one_or_none()
    if head is None:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        connection.execute(
            dialect.insert(AuditHead)
            .values(id=1, seq=0, hash=GENESIS)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        head = connection.execute(locked).one()
    return int(head.seq), str(head.hash)
