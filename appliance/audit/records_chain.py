"""Checking an export's records: every record's hash, and each record's link to the one
before, named at the first bad record.

The hashes are independent of each other, so they are checked in parallel: the records
file is cut into chunks at line ends and each chunk goes to a worker process, which checks
its records' hashes and the links inside the chunk. The links between chunks, and so the
order of the whole chain, are checked here, chunk after chunk. A worker only says *where*
its chunk first goes wrong; that chunk is then checked again here, record by record, by
the same code as a one-process check, so the error names the same record in the same words
whatever the number of workers. Memory stays flat: a few chunks are in flight at a time.

Worker processes import this module and ``format`` only: standard library and orjson.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from appliance.audit.format import FORMAT, Record, hash_matches
from appliance.errors import ApplianceError

__all__ = [
    "CHUNK_BYTES",
    "ChainCheckError",
    "ChainSummary",
    "check_csv",
    "check_jsonl",
    "start_method",
]

#: Bytes of records.jsonl one worker checks at a time (whole lines).
CHUNK_BYTES = 1 << 20
#: Below this many bytes the records are checked in this process: starting workers costs more.
_PARALLEL_FROM = 8 << 20


class ChainCheckError(ApplianceError):
    """A record is bad; the message names it (verify re-raises it as AuditIntegrityError)."""


@dataclass(frozen=True)
class ChainSummary:
    """The records file as checked: how many rows, how many stubs, the last hash."""

    rows: int
    omitted: int
    last_seq: int
    last_hash: str | None


class _Chain:
    """The record-by-record check: order, link, content. One place, for every path."""

    def __init__(self, expected: int, prev_hash: str | None, present: Callable[[int], bool]):
        self.expected = expected
        self.prev_hash = prev_hash
        self.present = present
        self.rows = 0
        self.omitted = 0

    def step(self, row: dict[str, Any]) -> None:
        seq = int(row["seq"])
        if seq != self.expected:
            expected = self.expected
            if self.present(expected):
                raise ChainCheckError(
                    f"record {expected} is out of order (reordered): record {seq} comes before it"
                )
            raise ChainCheckError(
                f"record {expected} is missing (deleted): record {seq} "
                f"comes after record {expected - 1}"
            )
        if self.prev_hash is not None and row["prev_hash"] != self.prev_hash:
            raise ChainCheckError(
                f"record {seq} does not follow record {seq - 1} (a splice of two exports, "
                "or an edited hash)"
            )
        if row.get("omitted"):
            self.omitted += 1
        else:
            _check_content(seq, row)
        self.prev_hash, self.expected = row["hash"], seq + 1
        self.rows += 1


def _check_content(seq: int, row: dict[str, Any]) -> None:
    record = Record(
        seq=seq,
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        outcome=row["outcome"],
        client=row["client"],
        details=row["details"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
    if not hash_matches(record):
        raise ChainCheckError(
            f"record {seq} ({record.action} by {record.actor}) was altered: its "
            "content does not match its hash"
        )


def _parse_line(line: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        value = json.loads(line)  # NaN and the like, which orjson refuses: the stdlib decides
    if not isinstance(value, dict):
        raise ChainCheckError(
            f"the records file cannot be read: a line is not an object: {line[:80]!r}"
        )
    return value


def _parse(line: bytes) -> dict[str, Any]:
    try:
        return _parse_line(line)
    except ValueError as exc:
        raise ChainCheckError(f"the records file cannot be read: {exc}") from exc


@dataclass(frozen=True)
class _ChunkResult:
    """What a worker found in one chunk. ``bad`` is the index of the first line it could
    not pass on its own; the links into the chunk's first record are checked by the caller."""

    rows: int
    omitted: int
    first_seq: int | None
    first_prev: Any
    last_seq: int | None
    last_hash: Any
    bad: int | None


def _check_chunk(data: bytes) -> _ChunkResult:
    """A worker's task: parse and check one chunk of whole lines.

    A fast filter, not the judge: it passes a record only when its sequence number and
    link are exactly the expected ones and orjson's canonical bytes hash to its hash (then
    they are the canonical bytes). Anything else, however harmless, marks the record, and
    the caller checks the chunk again with ``_Chain``, the one definition of a good record.
    """
    loads, dumps, sha256, sort = orjson.loads, orjson.dumps, hashlib.sha256, orjson.OPT_SORT_KEYS
    rows = omitted = 0
    first_seq: int | None = None
    first_prev: Any = None
    expected: int | None = None
    prev: Any = None
    for index, line in enumerate(data.splitlines()):
        if not line:
            continue
        try:
            row = loads(line)
            seq = row["seq"]
            if expected is None:  # the first record: its links are the caller's to check
                first_seq, first_prev, expected, prev = seq, row["prev_hash"], seq, row["prev_hash"]
            if type(seq) is not int or seq != expected or row["prev_hash"] != prev:
                return _ChunkResult(rows, omitted, first_seq, first_prev, None, None, index)
            if row.get("omitted"):
                omitted += 1
            else:
                canonical = dumps(
                    {
                        "action": row["action"],
                        "actor": row["actor"],
                        "at": row["at"],
                        "client": row["client"],
                        "details": row["details"],
                        "format": FORMAT,
                        "outcome": row["outcome"],
                        "prev_hash": prev,
                        "seq": seq,
                        "target": row["target"],
                    },
                    option=sort,
                )
                if sha256(canonical).hexdigest() != row["hash"]:
                    return _ChunkResult(rows, omitted, first_seq, first_prev, None, None, index)
            prev, expected = row["hash"], seq + 1
            rows += 1
        except (KeyError, TypeError, ValueError, AttributeError):
            return _ChunkResult(rows, omitted, first_seq, first_prev, None, None, index)
    if expected is None:
        return _ChunkResult(0, 0, None, None, None, None, None)
    return _ChunkResult(rows, omitted, first_seq, first_prev, expected - 1, prev, None)


@dataclass(frozen=True)
class _Span:
    """Where one chunk's lines lie in the archive: bytes [start, end) of the records."""

    path: str
    base: int  # where the records member's data begins in the archive
    size: int  # the member's size
    start: int
    end: int

    def read(self, start: int, length: int) -> bytes:
        """``length`` bytes of the records from ``start`` (fewer only at the end)."""
        length = max(0, min(length, self.size - start))
        with open(self.path, "rb") as handle:  # noqa: PTH123 (a worker opens by path)
            data = os.pread(handle.fileno(), length, self.base + start)
        if len(data) != length:
            raise OSError(f"{self.path} ends inside its records: the archive is truncated")
        return data

    def line_start(self, at: int) -> int:
        """The first line start at or after ``at`` (lines start at 0 and after each newline)."""
        if at <= 0:
            return 0
        position = at - 1
        while position < self.size:
            block = self.read(position, 1 << 16)
            found = block.find(b"\n")
            if found >= 0:
                return position + found + 1
            position += len(block)
        return self.size

    def lines(self) -> tuple[int, bytes]:
        """The whole lines that start in [start, end): their offset and bytes."""
        first, after = self.line_start(self.start), self.line_start(self.end)
        return first, self.read(first, after - first) if after > first else b""


def _check_span(span: _Span) -> tuple[int, int, _ChunkResult]:
    """A worker's task: read its own lines from the archive (nothing is shipped to it) and
    check them; the caller learns where they were, to read them again if need be."""
    first, data = span.lines()
    return first, len(data), _check_chunk(data)


class _Serial(Executor):
    """Runs each task at once, here: the small-export path, same code as the parallel one."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def check_jsonl(
    archive: Path,
    base: int,
    size: int,
    first: int,
    open_records: Callable[[], IO[bytes]],
    *,
    workers: int | None = None,
    chunk_bytes: int | None = None,
) -> ChainSummary:
    """Check records.jsonl (``size`` bytes at ``base`` in ``archive``) from record ``first``
    on; raise ChainCheckError at the first bad record (KeyError and the like for a
    malformed one, as a one-process check would).

    ``open_records`` opens the file from its start (only to word an error about order);
    ``workers`` defaults to every core; a file under 8 MiB is checked in this process.
    """
    count = workers or os.cpu_count() or 1
    parallel = count > 1 and (size >= _PARALLEL_FROM or workers is not None)
    pool = ProcessPoolExecutor(count, mp_context=start_method()) if parallel else _Serial()
    step = chunk_bytes or CHUNK_BYTES
    chain = _Chain(first, None, lambda seq: _seq_present(open_records, seq))
    with pool:
        waiting: deque[tuple[_Span, Future[tuple[int, int, _ChunkResult]]]] = deque()
        for start in range(0, size, step):
            span = _Span(str(archive), base, size, start, min(start + step, size))
            waiting.append((span, pool.submit(_check_span, span)))
            if len(waiting) >= 2 * count:
                _take(chain, *waiting.popleft())
        while waiting:
            _take(chain, *waiting.popleft())
    return ChainSummary(chain.rows, chain.omitted, chain.expected - 1, chain.prev_hash)


def start_method() -> multiprocessing.context.BaseContext:
    """How worker processes start (the export's workers too)."""
    # fork starts workers at once and re-runs nothing; it is safe only where no other thread
    # may hold a lock, on Linux. Elsewhere spawn, which imports the caller's main module
    # again (the CLI's entry points are guarded for that).
    single = sys.platform == "linux" and threading.active_count() == 1
    return multiprocessing.get_context("fork" if single else "spawn")


def _take(chain: _Chain, span: _Span, future: Future[tuple[int, int, _ChunkResult]]) -> None:
    """Join a checked chunk onto the chain, or find its first bad record here."""
    offset, length, result = future.result()
    joins = (
        result.bad != 0
        and result.first_seq == chain.expected
        and (chain.prev_hash is None or result.first_prev == chain.prev_hash)
    )
    if joins and result.bad is None and result.last_seq is not None:
        chain.expected, chain.prev_hash = result.last_seq + 1, result.last_hash
        chain.rows += result.rows
        chain.omitted += result.omitted
        return
    if result.first_seq is None and result.bad is None:
        return  # only empty lines
    # Something is wrong in this chunk or at its start: check it record by record, here.
    for line in span.read(offset, length).splitlines():
        if line:
            chain.step(_parse(line))


def _seq_present(open_records: Callable[[], IO[bytes]], seq: int) -> bool:
    """Whether any line holds record ``seq`` (only to tell a reordering from a deletion)."""
    with open_records() as stream:
        for line in stream:
            try:
                row = _parse_line(line)
                if int(row["seq"]) == seq:
                    return True
            except (ChainCheckError, KeyError, TypeError, ValueError):
                continue
    return False


def check_csv(open_records: Callable[[], IO[bytes]], first: int) -> ChainSummary:
    """Check records.csv, in this process (a CSV field may hold a line break, so the file
    cannot be cut at line ends); streamed like JSON Lines."""

    def present(seq: int) -> bool:
        with open_records() as again:
            return any(str(seq) == row["seq"] for row in _csv_rows(again))

    chain = _Chain(first, None, present)
    with open_records() as stream:
        for row in _csv_rows(stream):
            chain.step(row)
    return ChainSummary(chain.rows, chain.omitted, chain.expected - 1, chain.prev_hash)


def _csv_rows(stream: IO[bytes]) -> Iterable[dict[str, Any]]:
    try:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        for raw in csv.DictReader(text):
            row: dict[str, Any] = dict(raw)
            row["omitted"] = raw["omitted"] == "yes"
            if not row["omitted"]:
                row["details"] = json.loads(raw["details"])
            yield row
    except (ValueError, KeyError) as exc:
        raise ChainCheckError(f"the records file cannot be read: {exc}") from exc
