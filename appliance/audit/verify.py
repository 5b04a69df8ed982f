"""Verifying an export offline: nothing but the archive (and, optionally, the key).

Raises AuditIntegrityError naming the first bad record. Proves: every record's content
matches its hash; each follows the one before (no gap, no reordering, no splice); the last
record is in the Merkle tree of a checkpoint signed by the audit key; and, when the
archive names a previous export, that the log only grew since (consistency proof).

A window's evidence export also carries its session recordings
(:mod:`appliance.audit.recordings.carried`): each one that a verified
``breakglass.recording`` record names must be there, sealed with the same key, intact, of
its window and with the manifest digest the record holds; an export without them says how
many recordings its records name that it does not carry.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.checkpoint import AuditIntegrityError, Checkpoint, verify_checkpoint
from appliance.audit.merkle import MerkleProofError, verify_consistency, verify_inclusion
from appliance.audit.recordings.carried import (
    INDEX,
    MAX_CARRIED_FILES,
    RecordedSession,
    is_carried_member,
    verify_carried,
)
from appliance.audit.recordings.verify import RecordingReport
from appliance.audit.records_chain import ChainCheckError, ChainSummary, check_csv, check_jsonl

__all__ = ["ExportSummary", "verify_export"]

_MAX_MEMBER = 4 * 2**30
#: Every member but the records is a few kilobytes: read whole, so bounded.
_MAX_SMALL_MEMBER = 16 * 2**20
_RECORDS = {"records.jsonl", "records.csv"}
_NAMES = {
    "records.jsonl",
    "records.csv",
    "checkpoint.json",
    "proofs.json",
    "audit-public-key.pem",
    "README.txt",
}


@dataclass(frozen=True)
class ExportSummary:
    """An export that verified."""

    first: int
    last: int
    records: int
    omitted: int
    tree_size: int
    previous_tree_size: int | None
    #: Whether the export is a window's evidence (it carries ``recordings.json``).
    evidence: bool = False
    #: The carried recordings, each verified against its audit record.
    recordings: tuple[RecordingReport, ...] = field(default=())
    #: Recordings its records name that a plain (not evidence) export does not carry.
    recordings_not_carried: int = 0


def verify_export(
    path: Path,
    *,
    key_pem: bytes | None = None,
    previous: Path | None = None,
    workers: int | None = None,
) -> ExportSummary:
    """Verify the export at ``path``; ``key_pem`` pins the key, ``previous`` an older export.

    The records are streamed and their hashes checked on ``workers`` processes (every core
    by default; a small export is checked in this process).
    """
    try:
        return _verify(path, key_pem, previous, workers)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # A well-formed export never gets here: a field is missing or of the wrong type.
        raise AuditIntegrityError(
            f"{path} is malformed: {type(exc).__name__} {exc} (a field was removed or changed)"
        ) from exc


def _verify(
    path: Path, key_pem: bytes | None, previous: Path | None, workers: int | None
) -> ExportSummary:
    with _open_archive(path) as tar:
        files, records, carried = _members(path, tar)
        public = _public_key(key_pem or files.get("audit-public-key.pem"), path)
        checkpoint = Checkpoint(**_json(files, "checkpoint.json"))
        verify_checkpoint(checkpoint, public)
        proofs = _json(files, "proofs.json")
        first, last = int(proofs["first"]), int(proofs["last"])
        chain = _check_records(path, tar, records, first, workers)
        recorded = _recorded_sessions(path, tar, records)  # from records that verified
        evidence = INDEX in files
        if carried and not evidence:
            raise AuditIntegrityError(
                f"{path}: carries recordings but no {INDEX}: not an export this appliance made"
            )
        reports = verify_carried(path, tar, carried, recorded, public) if evidence else []
    if not chain.rows:
        raise AuditIntegrityError(f"{path}: the export holds no records")
    if chain.last_seq != last:
        raise AuditIntegrityError(
            f"the export ends at record {chain.last_seq} but its proof covers records up to "
            f"{last}: records {chain.last_seq + 1}..{last} were cut off (truncated)"
        )
    inclusion = proofs["inclusion"]
    if int(inclusion["seq"]) != last or int(inclusion["tree_size"]) != checkpoint.tree_size:
        raise AuditIntegrityError("proofs.json does not match the checkpoint or the records")
    try:
        verify_inclusion(
            bytes.fromhex(chain.last_hash or ""),
            last - 1,
            checkpoint.tree_size,
            [bytes.fromhex(h) for h in inclusion["path"]],
            bytes.fromhex(checkpoint.root_hash),
        )
    except (MerkleProofError, ValueError) as exc:
        raise AuditIntegrityError(
            f"record {last} is not in the signed checkpoint of {checkpoint.tree_size} records: "
            f"{exc}"
        ) from exc

    previous_size = _check_previous(proofs, checkpoint, previous, public)
    return ExportSummary(
        first,
        last,
        chain.rows,
        chain.omitted,
        checkpoint.tree_size,
        previous_size,
        evidence=evidence,
        recordings=tuple(reports),
        recordings_not_carried=0 if evidence else len(recorded),
    )


def _recorded_sessions(
    path: Path, tar: tarfile.TarFile, records: tarfile.TarInfo | None
) -> list[RecordedSession]:
    """The ``breakglass.recording`` records the export shows in full (not stubs)."""
    if records is None:
        return []
    handle = tar.extractfile(records)
    if handle is None:
        raise AuditIntegrityError(f"{path}: {records.name} is not a file")
    found: list[RecordedSession] = []
    with handle:
        if records.name == "records.csv":
            for row in csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline="")):
                if row.get("action") == "breakglass.recording" and not row.get("omitted"):
                    found.append(RecordedSession.of(int(row["seq"]), json.loads(row["details"])))
            return found
        for line in handle:
            if b"breakglass.recording" not in line:
                continue
            row = json.loads(line)
            if row.get("action") == "breakglass.recording" and not row.get("omitted"):
                found.append(RecordedSession.of(int(row["seq"]), row["details"]))
    return found


def _check_records(
    path: Path,
    tar: tarfile.TarFile,
    records: tarfile.TarInfo | None,
    first: int,
    workers: int | None,
) -> ChainSummary:
    if records is None:
        raise AuditIntegrityError("the export has no records.jsonl or records.csv")

    def open_records() -> IO[bytes]:
        handle = tar.extractfile(records)
        if handle is None:
            raise AuditIntegrityError(f"{path}: {records.name} is not a file")
        return handle

    try:
        if records.name == "records.jsonl":
            return check_jsonl(
                path, records.offset_data, records.size, first, open_records, workers=workers
            )
        return check_csv(open_records, first)
    except ChainCheckError as exc:
        raise AuditIntegrityError(str(exc)) from None
    except (OSError, tarfile.TarError) as exc:
        raise AuditIntegrityError(f"{path} is not a readable audit export: {exc}") from exc


def _check_previous(
    proofs: dict[str, Any],
    checkpoint: Checkpoint,
    previous: Path | None,
    public: ec.EllipticCurvePublicKey,
) -> int | None:
    link = proofs.get("previous_export")
    if previous is not None:
        with _open_archive(previous) as tar:
            older_files, _, _ = _members(previous, tar)
        older = Checkpoint(**_json(older_files, "checkpoint.json"))
        verify_checkpoint(older, public)
        if link is None or (int(link["tree_size"]), link["root_hash"]) != (
            older.tree_size,
            older.root_hash,
        ):
            raise AuditIntegrityError(
                f"{previous} is not the export before this one (its checkpoint of "
                f"{older.tree_size} records is not the one this export continues)"
            )
    if link is None:
        return None
    try:
        verify_consistency(
            int(link["tree_size"]),
            checkpoint.tree_size,
            bytes.fromhex(link["root_hash"]),
            bytes.fromhex(checkpoint.root_hash),
            [bytes.fromhex(h) for h in link["consistency"]],
        )
    except (MerkleProofError, ValueError) as exc:
        raise AuditIntegrityError(
            f"the log of the previous export ({link['tree_size']} records) is not a prefix of "
            f"this one: records exported before were changed or removed ({exc})"
        ) from exc
    return int(link["tree_size"])


def _open_archive(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise AuditIntegrityError(f"{path} is not a readable audit export: {exc}") from exc


def _members(
    path: Path, tar: tarfile.TarFile
) -> tuple[dict[str, bytes], tarfile.TarInfo | None, dict[str, tarfile.TarInfo]]:
    """The small members, read; the records member, to be streamed (it may be gigabytes);
    the recordings a window's evidence carries, to be checked once the records are."""
    files: dict[str, bytes] = {}
    records: tarfile.TarInfo | None = None
    carried: dict[str, tarfile.TarInfo] = {}
    try:
        for member in tar:
            known = member.name in _NAMES or is_carried_member(member.name)
            # Sparse members are refused too: the records are read by offset in the archive.
            if not known or not member.isfile() or member.issparse():
                raise AuditIntegrityError(
                    f"{path}: unexpected member {member.name!r} in an audit export"
                )
            if member.size > _MAX_MEMBER:
                raise AuditIntegrityError(f"{path}: {member.name} is too large")
            if member.name in _RECORDS:
                # As before: the JSON Lines file wins over the CSV.
                if records is None or member.name == "records.jsonl":
                    records = member
                continue
            if member.name != INDEX and is_carried_member(member.name):
                if member.name in carried:
                    raise AuditIntegrityError(f"{path}: {member.name} is in the archive twice")
                if len(carried) >= MAX_CARRIED_FILES:
                    raise AuditIntegrityError(
                        f"{path}: more than {MAX_CARRIED_FILES} recording files"
                    )
                carried[member.name] = member
                continue
            if member.size > _MAX_SMALL_MEMBER:
                raise AuditIntegrityError(f"{path}: {member.name} is too large")
            handle = tar.extractfile(member)
            files[member.name] = handle.read() if handle else b""
    except (OSError, tarfile.TarError) as exc:
        raise AuditIntegrityError(f"{path} is not a readable audit export: {exc}") from exc
    return files, records, carried


def _json(files: dict[str, bytes], name: str) -> dict[str, Any]:
    try:
        value = json.loads(files[name])
    except KeyError:
        raise AuditIntegrityError(f"the export has no {name}") from None
    except ValueError as exc:
        raise AuditIntegrityError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise AuditIntegrityError(f"{name}: expected a JSON object")
    return value


def _public_key(pem: bytes | None, path: Path) -> ec.EllipticCurvePublicKey:
    if not pem:
        raise AuditIntegrityError(f"{path}: no audit public key in the export and none given")
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise AuditIntegrityError(f"the audit public key cannot be read: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AuditIntegrityError("the audit public key is not an ECDSA key")
    return key
