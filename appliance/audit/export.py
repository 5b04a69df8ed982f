"""Exports for auditors: one tar archive that proves itself offline.

    records.jsonl | records.csv   every record from the first to the last match, in order;
                                  records the type filter leaves out appear as stubs
                                  (seq, prev_hash, hash, omitted) so the chain stays whole
    checkpoint.json               a signed tree head made for this export
    proofs.json                   the last record's Merkle inclusion proof in that tree,
                                  and the consistency proof from the previous export's tree
    audit-public-key.pem          the key that signs checkpoints
    README.txt                    how to verify, with the appliance or by hand
    recordings.json, recordings/  a window's evidence only: the vendor shell sessions it
                                  recorded (appliance.audit.recordings.carried)

The export itself is recorded in the log (action ``audit.export``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import tarfile
import tempfile
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, Text, func, select, type_coerce
from sqlalchemy.orm import Session

from appliance.audit.checkpoint import (
    log_tree,
    make_checkpoint,
    public_key_pem,
    require_signer,
)
from appliance.audit.format import FORMAT, json_line, timestamp
from appliance.audit.record import record_event
from appliance.audit.records_chain import start_method
from appliance.db.engine import make_engine
from appliance.db.models import AuditCheckpoint, AuditEvent
from appliance.errors import ApplianceError

__all__ = ["CSV_FIELDS", "ExportResult", "export_log"]

CSV_FIELDS = [
    "seq",
    "at",
    "actor",
    "action",
    "target",
    "outcome",
    "client",
    "details",
    "prev_hash",
    "hash",
    "omitted",
]
README = """Audit log export — how to verify it

With the appliance package (no network, nothing else needed):
    appliance audit verify THIS-FILE.tar [--key audit-public-key.pem] [--previous OLDER.tar]

By hand: every record's "hash" is SHA-256 over the UTF-8 of a JSON object holding
"format": "{format}" and every field of the record except "hash" (and "omitted"),
keys sorted, no whitespace (json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)). Each record's "prev_hash" is the hash of the record before it.
The last record's hash is a leaf of the RFC 9162 Merkle tree signed in checkpoint.json
(proofs.json holds the inclusion proof). The signed statement is
"appliance-audit-checkpoint/1\\n<tree_size>\\n<root_hash>\\n<created_at>\\n", ECDSA P-384
with SHA-384 (signature hex DER): openssl dgst -sha384 -verify audit-public-key.pem
-signature sig.der statement.txt
"""


class ExportError(ApplianceError):
    """An export that cannot be made as asked."""


@dataclass(frozen=True)
class ExportResult:
    """What was exported."""

    path: Path
    first: int
    last: int
    records: int
    omitted: int
    tree_size: int


def export_log(
    db: Session,
    key: ec.EllipticCurvePrivateKey,
    *,
    since: datetime,
    until: datetime,
    types: list[str] | None,
    fmt: Literal["jsonl", "csv"],
    out: Path,
    actor: str,
    client: str = "",
    targets: list[str] | None = None,
    workers: int | None = None,
    attachments: Mapping[str, Path | bytes] | None = None,
) -> ExportResult:
    """Write the export archive atomically and record the export in the log.

    ``types`` keeps records whose action or its first part is listed; ``targets`` keeps
    records about those targets (a break-glass window's evidence). Others become stubs.
    A large export is formatted by ``workers`` processes (default: every core), each
    reading its own range of records from the database; the file is the same bytes.
    A ``key`` that signed none of the log's checkpoints is refused (AuditKeyMismatchError)
    before anything is signed or written: its export would not verify.
    ``attachments`` are carried beside the records as members of those names, from a file
    or as bytes (a window's recordings: :func:`appliance.audit.recordings.carried.carry`).
    """
    if attachments and fmt != "jsonl":
        raise ExportError("an export that carries recordings holds its records as jsonl")
    if since > until:
        raise ExportError(f"--since {since.isoformat()} is after --until {until.isoformat()}")
    window = (AuditEvent.at >= since) & (AuditEvent.at <= until)
    first = db.scalar(select(func.min(AuditEvent.seq)).where(window))
    last = db.scalar(select(func.max(AuditEvent.seq)).where(window))
    if first is None or last is None:
        raise ExportError(f"no audit records between {since.isoformat()} and {until.isoformat()}")
    require_signer(db, key)  # before any worker starts
    out.parent.mkdir(parents=True, exist_ok=True)
    keep = _Keep(tuple(types or ()), tuple(targets or ()))
    with contextlib.ExitStack() as stack:
        records = stack.enter_context(tempfile.TemporaryFile(dir=out.parent))
        writer = _Records(db, records, first, last, fmt, keep, workers=workers)
        stack.callback(writer.close)
        checkpoint, files = _signed_files(db, key, first, last)
        count, omitted = writer.finish()
        _write_tar(out, {**files, **(attachments or {})}, (f"records.{fmt}", records))
    record_event(
        db,
        actor=actor,
        action="audit.export",
        target=out.name,
        client=client,
        details={
            "first": first,
            "last": last,
            "tree_size": checkpoint.tree_size,
            "root_hash": checkpoint.root_hash,
            "types": types or [],
            "targets": targets or [],
            "format": fmt,
            **({"attachments": len(attachments)} if attachments else {}),
        },
    )
    db.commit()
    return ExportResult(out, first, last, count, omitted, checkpoint.tree_size)


def _signed_files(
    db: Session, key: ec.EllipticCurvePrivateKey, first: int, last: int
) -> tuple[AuditCheckpoint, dict[str, bytes]]:
    """The checkpoint covering the log now, and the archive's files beside the records."""
    tree = log_tree(db)  # built once: it is signed, and it gives the proofs
    make_checkpoint(db, key, tree)  # refuses a key that did not sign the log's checkpoints
    db.commit()
    checkpoint = db.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()))
    if checkpoint is None:  # made just above, or an earlier one covers everything
        raise ExportError("no checkpoint could be made for the export")
    for digest in db.scalars(  # records appended since the tree was read, up to a newer one
        select(AuditEvent.hash)
        .where(AuditEvent.seq > tree.size, AuditEvent.seq <= checkpoint.tree_size)
        .order_by(AuditEvent.seq)
    ):
        tree.append(bytes.fromhex(digest))
    previous = _previous_export(db)

    proofs: dict[str, Any] = {
        "format": FORMAT,
        "first": first,
        "last": last,
        "inclusion": {
            "seq": last,
            "tree_size": tree.size,
            "path": [h.hex() for h in tree.inclusion_proof(last - 1)],
        },
    }
    if previous is not None and 0 < previous[0] <= tree.size:
        proofs["previous_export"] = {
            "tree_size": previous[0],
            "root_hash": previous[1],
            "consistency": [h.hex() for h in tree.consistency_proof(previous[0])],
        }
    files = {
        "checkpoint.json": json.dumps(
            {
                "tree_size": checkpoint.tree_size,
                "root_hash": checkpoint.root_hash,
                "created_at": timestamp(checkpoint.created_at),
                "key_id": checkpoint.key_id,
                "signature": checkpoint.signature,
            },
            indent=1,
        ).encode(),
        "proofs.json": json.dumps(proofs, indent=1).encode(),
        "audit-public-key.pem": public_key_pem(key),
        "README.txt": README.format(format=FORMAT).encode(),
    }
    return checkpoint, files


def _previous_export(db: Session) -> tuple[int, str] | None:
    row = db.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "audit.export")
        .order_by(AuditEvent.seq.desc())
    )
    if row is None:
        return None
    return int(row.details["tree_size"]), str(row.details["root_hash"])


#: Records one worker formats at a time, and the fewest for which workers are started.
CHUNK_RECORDS = 25_000
_PARALLEL_FROM = 200_000
#: Chunks handed out before the Merkle tree is built (about 80 MiB of records at most).
_FIRST_CHUNKS = 10
_COLUMNS = (
    AuditEvent.seq,
    type_coerce(AuditEvent.at, Text),  # SQLite's stored text; a datetime from PostgreSQL
    AuditEvent.actor,
    AuditEvent.action,
    AuditEvent.target,
    AuditEvent.outcome,
    AuditEvent.client,
    type_coerce(AuditEvent.details, Text),  # the stored JSON text where the driver gives it
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


@dataclass(frozen=True)
class _Keep:
    """Which records an export shows in full; the others become stubs."""

    types: tuple[str, ...]
    targets: tuple[str, ...]

    def leaves_out(self, action: str, target: str) -> bool:
        types, targets = self.types, self.targets
        return bool(
            (types and action not in types and action.split(".")[0] not in types)
            or (targets and target not in targets)
        )


class _Records:
    """Records first..last written to ``handle``; (rows, stubs) from :meth:`finish`.

    A large range is cut into chunks that worker processes read and format on their own
    connections (records never change once written, so each sees the same rows). The first
    chunks are handed out at once, so the workers format them while this process builds
    the Merkle tree; the rest follow as chunks come back, written here in order, a few in
    flight at a time (memory stays flat). A small range is formatted here, at finish, in
    the session's own transaction.
    """

    def __init__(
        self,
        db: Session,
        handle: IO[bytes],
        first: int,
        last: int,
        fmt: str,
        keep: _Keep,
        *,
        workers: int | None,
    ) -> None:
        self.db, self.handle, self.fmt, self.keep = db, handle, fmt, keep
        self.rows = self.omitted = 0
        if fmt == "csv":
            handle.write(_csv_lines([], header=True))
        count = workers or os.cpu_count() or 1
        url = db.connection().engine.url
        parallel = (
            count > 1
            and (last - first + 1 >= _PARALLEL_FROM or workers is not None)
            and url.database not in (None, "", ":memory:")
        )
        self.span = (first, last)
        self.pool = ProcessPoolExecutor(count, mp_context=start_method()) if parallel else None
        self.address = url.render_as_string(hide_password=False)
        self.starts = iter(range(first, last + 1, CHUNK_RECORDS))
        self.waiting: deque[Future[tuple[bytes, int, int]]] = deque()
        self.window = max(2 * count, _FIRST_CHUNKS)
        if self.pool is not None:
            self._submit(self.window)

    def _submit(self, chunks: int) -> None:
        if self.pool is None:
            return
        for start in itertools.islice(self.starts, chunks):
            end = min(start + CHUNK_RECORDS - 1, self.span[1])
            self.waiting.append(
                self.pool.submit(_format_range, self.address, start, end, self.fmt, self.keep)
            )

    def finish(self) -> tuple[int, int]:
        if self.pool is None:
            for lines, n, stubs in _format(self.db.connection(), *self.span, self.fmt, self.keep):
                self._write(lines, n, stubs)
        while self.waiting:
            self._write(*self.waiting.popleft().result())
            self._submit(1)
        self.handle.flush()
        return self.rows, self.omitted

    def _write(self, lines: bytes, rows: int, stubs: int) -> None:
        self.handle.write(lines)
        self.rows, self.omitted = self.rows + rows, self.omitted + stubs

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _format_range(url: str, first: int, last: int, fmt: str, keep: _Keep) -> tuple[bytes, int, int]:
    """A worker's task: records first..last, formatted, from its own read-only engine."""
    engine = make_engine(url, read_only=True)
    try:
        with engine.connect() as connection:
            parts = list(_format(connection, first, last, fmt, keep))
    finally:
        engine.dispose()
    return (
        b"".join(p[0] for p in parts),
        sum(p[1] for p in parts),
        sum(p[2] for p in parts),
    )


def _format(
    connection: Connection, first: int, last: int, fmt: str, keep: _Keep
) -> Iterator[tuple[bytes, int, int]]:
    """Records first..last as the file's bytes, a batch at a time: (bytes, rows, stubs)."""
    query = (
        select(*_COLUMNS)
        .where(AuditEvent.seq >= first, AuditEvent.seq <= last)
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=10_000)  # on the statement: the session's connection
    )  # is shared with the export's own record, which must not use a server-side cursor
    result = connection.execute(query)
    for batch in result.partitions():
        records: list[dict[str, Any]] = []
        stubs = 0
        # Plain rows, not ORM objects: a third of the time per record.
        for seq, at, actor, action, target, outcome, client, details, prev, hash_ in batch:
            if keep.leaves_out(action, target):
                records.append({"seq": seq, "prev_hash": prev, "hash": hash_, "omitted": True})
                stubs += 1
                continue
            records.append(
                {
                    "seq": seq,
                    "at": _timestamp(at),
                    "actor": actor,
                    "action": action,
                    "target": target,
                    "outcome": outcome,
                    "client": client,
                    "details": _json_value(details),
                    "prev_hash": prev,
                    "hash": hash_,
                }
            )
        lines = b"".join(map(json_line, records)) if fmt == "jsonl" else _csv_lines(records)
        yield lines, len(records), stubs


def _timestamp(stored: Any) -> str:
    """The canonical text of a stored time. SQLite holds UTC as "YYYY-MM-DD HH:MM:SS.ffffff"
    (six digits always): rewritten, not parsed, as that is a fifth of an export's time."""
    if isinstance(stored, str) and len(stored) == 26 and stored[10] == " " and stored[19] == ".":
        return f"{stored[:10]}T{stored[11:]}+00:00"
    if isinstance(stored, str):  # any other spelling: read it as the column type would
        moment = datetime.fromisoformat(stored)
        return timestamp(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return timestamp(stored)


def _json_value(stored: Any) -> Any:
    if not isinstance(stored, str | bytes):
        return stored  # the driver decoded it (PostgreSQL)
    try:
        return orjson.loads(stored)
    except orjson.JSONDecodeError:
        return json.loads(stored)  # NaN and the like: the standard library wrote them


def _csv_lines(records: list[dict[str, Any]], *, header: bool = False) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS)
    if header:
        writer.writeheader()
    for out in records:
        writer.writerow(
            {
                **dict.fromkeys(CSV_FIELDS, ""),
                **out,
                "details": json.dumps(out["details"], sort_keys=True, ensure_ascii=False)
                if "details" in out
                else "",
                "omitted": "yes" if out.get("omitted") else "",
            }
        )
    return text.getvalue().encode("utf-8")


def _write_tar(
    out: Path, files: Mapping[str, bytes | Path], records: tuple[str, IO[bytes]]
) -> None:
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
                name, data = records
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = data.seek(0, os.SEEK_END), 0o444, 0
                data.seek(0)
                tar.addfile(info, data)
                for member, content in files.items():
                    info = tarfile.TarInfo(member)
                    info.mode, info.mtime = 0o444, 0
                    if isinstance(content, bytes):
                        info.size = len(content)
                        tar.addfile(info, io.BytesIO(content))
                        continue
                    with content.open("rb") as source:  # streamed: a recording may be large
                        info.size = os.fstat(source.fileno()).st_size
                        tar.addfile(info, source)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
