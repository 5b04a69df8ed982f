"""Verifying an export offline: nothing but the archive (and, optionally, the key).

Raises AuditIntegrityError naming the first bad record. Proves: every record's content
matches its hash; each follows the one before (no gap, no reordering, no splice); the last
record is in the Merkle tree of a checkpoint signed by the audit key; and, when the
archive names a previous export, that the log only grew since (consistency proof).
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.checkpoint import AuditIntegrityError, Checkpoint, verify_checkpoint
from appliance.audit.format import Record, record_hash
from appliance.audit.merkle import MerkleProofError, verify_consistency, verify_inclusion

__all__ = ["ExportSummary", "verify_export"]

_MAX_MEMBER = 4 * 2**30
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


def verify_export(
    path: Path, *, key_pem: bytes | None = None, previous: Path | None = None
) -> ExportSummary:
    """Verify the export at ``path``; ``key_pem`` pins the key, ``previous`` an older export."""
    try:
        return _verify(path, key_pem, previous)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # A well-formed export never gets here: a field is missing or of the wrong type.
        raise AuditIntegrityError(
            f"{path} is malformed: {type(exc).__name__} {exc} (a field was removed or changed)"
        ) from exc


def _verify(path: Path, key_pem: bytes | None, previous: Path | None) -> ExportSummary:
    files = _read_archive(path)
    public = _public_key(key_pem or files.get("audit-public-key.pem"), path)
    checkpoint = Checkpoint(**_json(files, "checkpoint.json"))
    verify_checkpoint(checkpoint, public)
    proofs = _json(files, "proofs.json")
    rows = _rows(files)
    if not rows:
        raise AuditIntegrityError(f"{path}: the export holds no records")

    first, last = int(proofs["first"]), int(proofs["last"])
    present = {int(row["seq"]) for row in rows}
    prev_hash: str | None = None
    expected = first
    omitted = 0
    for row in rows:
        seq = int(row["seq"])
        if seq != expected:
            if expected in present:
                raise AuditIntegrityError(
                    f"record {expected} is out of order (reordered): record {seq} comes before it"
                )
            raise AuditIntegrityError(
                f"record {expected} is missing (deleted): record {seq} "
                f"comes after record {expected - 1}"
            )
        if prev_hash is not None and row["prev_hash"] != prev_hash:
            raise AuditIntegrityError(
                f"record {seq} does not follow record {seq - 1} (a splice of two exports, "
                "or an edited hash)"
            )
        if row.get("omitted"):
            omitted += 1
        else:
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
            if record_hash(record) != record.hash:
                raise AuditIntegrityError(
                    f"record {seq} ({record.action} by {record.actor}) was altered: its "
                    "content does not match its hash"
                )
        prev_hash, expected = row["hash"], seq + 1
    if expected - 1 != last:
        raise AuditIntegrityError(
            f"the export ends at record {expected - 1} but its proof covers records up to "
            f"{last}: records {expected}..{last} were cut off (truncated)"
        )
    inclusion = proofs["inclusion"]
    if int(inclusion["seq"]) != last or int(inclusion["tree_size"]) != checkpoint.tree_size:
        raise AuditIntegrityError("proofs.json does not match the checkpoint or the records")
    try:
        verify_inclusion(
            bytes.fromhex(prev_hash or ""),
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
    return ExportSummary(first, last, len(rows), omitted, checkpoint.tree_size, previous_size)


def _check_previous(
    proofs: dict[str, Any],
    checkpoint: Checkpoint,
    previous: Path | None,
    public: ec.EllipticCurvePublicKey,
) -> int | None:
    link = proofs.get("previous_export")
    if previous is not None:
        older = Checkpoint(**_json(_read_archive(previous), "checkpoint.json"))
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


def _read_archive(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.name not in _NAMES or not member.isfile():
                    raise AuditIntegrityError(
                        f"{path}: unexpected member {member.name!r} in an audit export"
                    )
                if member.size > _MAX_MEMBER:
                    raise AuditIntegrityError(f"{path}: {member.name} is too large")
                handle = tar.extractfile(member)
                files[member.name] = handle.read() if handle else b""
    except (OSError, tarfile.TarError) as exc:
        raise AuditIntegrityError(f"{path} is not a readable audit export: {exc}") from exc
    return files


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


def _rows(files: dict[str, bytes]) -> list[dict[str, Any]]:
    try:
        if "records.jsonl" in files:
            return [json.loads(line) for line in files["records.jsonl"].splitlines() if line]
        if "records.csv" in files:
            rows = []
            for raw in csv.DictReader(io.StringIO(files["records.csv"].decode("utf-8"))):
                row: dict[str, Any] = dict(raw)
                row["omitted"] = raw["omitted"] == "yes"
                if not row["omitted"]:
                    row["details"] = json.loads(raw["details"])
                rows.append(row)
            return rows
    except (ValueError, KeyError) as exc:
        raise AuditIntegrityError(f"the records file cannot be read: {exc}") from exc
    raise AuditIntegrityError("the export has no records.jsonl or records.csv")


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
