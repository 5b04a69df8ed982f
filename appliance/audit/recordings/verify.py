"""Verify a session recording offline, with the audit log's public key and nothing else.

What is checked, in this order, each failure naming the file (and chunk, and line when it
can be found): the session header; the chain file, link by link from the header; the
manifest's signature and key, then that it names the same session, chunks and last link
as the folder; the window asked for; every chained chunk's sha256 (a chunk that holds what
the chain gives another is called reordered, not altered); chunk files that nothing names.

A recording without a manifest was cut short: its chain still proves its chunks in order
but no signature covers them, so it is refused (:class:`UnsealedRecordingError`, saying
where it ends) unless the caller asks for it with ``allow_unsealed``; the report then says
it is unsealed, where the chained part ends and how many bytes follow unchained: at most
two chunks, the one the recorder had closed and was syncing, and the open one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.recordings.errors import (
    ChainEditedError,
    ChunkAlteredError,
    ChunksReorderedError,
    MalformedEventError,
    ManifestMismatchError,
    RecordingFileMissingError,
    RecordingIntegrityError,
    RecordingSignatureError,
    UnexpectedChunkError,
    UnsealedRecordingError,
    WrongWindowError,
)
from appliance.audit.recordings.layout import (
    CHAIN,
    CHUNK_RE,
    FORMAT,
    HEADER,
    KINDS,
    MANIFEST,
    SIGNATURE_ALGORITHM,
    canonical,
    chunk_name,
    first_link,
    next_link,
    parse_chain_line,
)
from appliance.audit.signing_key import AuditKeyError, key_id

__all__ = [
    "Event",
    "RecordingReport",
    "chunk_files",
    "load_public_key",
    "read_events",
    "verify_recording",
]

#: One event as stored: (t, channel or None, kind, data).
Event = tuple[float, int | None, str, Any]


@dataclass(frozen=True)
class RecordingReport:
    """What verified: whose session, which chunks in order, and whether a seal covers them."""

    path: Path
    sealed: bool
    window_id: int
    session_id: str
    engineer: str
    host: str
    started_at: str
    ended_at: str | None
    end_reason: str | None
    chunks: tuple[Path, ...]
    events: int
    duration: float
    last_link: str
    manifest_sha256: str | None
    key_id: str | None
    unchained_bytes: int

    def describe(self) -> str:
        """One paragraph for people: what verified and, when cut short, where it ends."""
        who = (
            f"window {self.window_id}, session {self.session_id}, engineer {self.engineer} "
            f"on {self.host}, from {self.started_at}"
        )
        if self.sealed:
            return (
                f"OK: sealed recording of {who} to {self.ended_at} ({self.end_reason}): "
                f"{len(self.chunks)} chunks, {self.events} events, {self.duration:.1f} s, "
                f"signed by key {(self.key_id or '')[:16]}…; manifest sha256 "
                f"{self.manifest_sha256}"
            )
        last = self.chunks[-1].name if self.chunks else "no chunk"
        tail = (
            f"; {self.unchained_bytes} bytes after it were written but never chained (not "
            "verified, not played)"
            if self.unchained_bytes
            else ""
        )
        return (
            f"UNSEALED (cut short, no signature covers it): recording of {who}: "
            f"{len(self.chunks)} chunks and {self.events} events verify by their chain; it "
            f"ends at {self.duration:.1f} s, in {last}{tail}"
        )


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """The audit public key from PEM (the audit export's ``audit-public-key.pem``)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise AuditKeyError(
            "the audit public key is not a PEM public key",
            hint="pass audit-public-key.pem from the site's audit export (the key the "
            "window's evidence was signed with)",
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AuditKeyError(
            "the audit public key is not an ECDSA key",
            hint="pass audit-public-key.pem from the site's audit export",
        )
    return key


def verify_recording(
    path: Path,
    public_key: ec.EllipticCurvePublicKey,
    *,
    window_id: int | None = None,
    allow_unsealed: bool = False,
) -> RecordingReport:
    """Verify the recording in folder ``path``; raise naming the first problem found.

    ``window_id``: the window it must be a recording of (WrongWindowError otherwise).
    ``allow_unsealed``: report a recording cut short instead of refusing it.
    """
    if not path.is_dir():
        raise RecordingFileMissingError("expected a recording's folder, found none", path=path)
    header_bytes = _read(path / HEADER)
    header = _json_object(path / HEADER, header_bytes)
    if header.get("format") != FORMAT:
        raise RecordingIntegrityError(
            f"expected format {FORMAT!r}, found {header.get('format')!r}", path=path / HEADER
        )
    manifest_path = path / MANIFEST
    manifest: dict[str, Any] | None = None
    manifest_sha256 = None
    if manifest_path.exists():
        data = _read(manifest_path)
        manifest_sha256 = hashlib.sha256(data).hexdigest()
        manifest = _json_object(manifest_path, data)
        _check_signature(manifest_path, manifest, public_key)
        _check_header(manifest_path, manifest, header, header_bytes)
    chained, last_link, partial = _read_chain(path, first_link(header_bytes))
    if manifest is not None:
        _check_sealed_chain(path, manifest, chained, last_link, partial)
    found_window = header.get("window_id")
    if window_id is not None and found_window != window_id:
        raise WrongWindowError(
            f"expected a recording of window {window_id}, found one of window {found_window}",
            path=path,
        )
    on_disk = {
        int(m[1]): path / name for name in _names(path) if (m := CHUNK_RE.match(name)) is not None
    }
    _check_chunks(path, chained, on_disk)
    unchained = sorted(n for n in on_disk if n > len(chained))
    cut = list(range(len(chained) + 1, len(chained) + 1 + len(unchained)))
    if unchained and (manifest is not None or unchained != cut or len(cut) > 2):
        names = ", ".join(on_disk[n].name for n in unchained)
        raise UnexpectedChunkError(
            f"chunk files that the {'manifest' if manifest else 'chain'} does not name: {names}"
            + (
                ""
                if manifest
                else " (a recording cut short has at most two chunks after its chain: one "
                "closed and waiting for the disk, and the open one)"
            ),
            path=path,
        )
    chunks = tuple(on_disk[n] for n in range(1, len(chained) + 1))
    events, duration = _count(chunks)
    report = RecordingReport(
        path=path,
        sealed=manifest is not None,
        window_id=int(header.get("window_id", 0)),
        session_id=str(header.get("session_id", "")),
        engineer=str(header.get("engineer", "")),
        host=str(header.get("host", "")),
        started_at=str(header.get("started_at", "")),
        ended_at=str(manifest["ended_at"]) if manifest else None,
        end_reason=str(manifest["end_reason"]) if manifest else None,
        chunks=chunks,
        events=events,
        duration=float(manifest["duration"]) if manifest else duration,
        last_link=last_link.hex(),
        manifest_sha256=manifest_sha256,
        key_id=str(manifest["key_id"]) if manifest else None,
        unchained_bytes=sum(on_disk[n].stat().st_size for n in unchained),
    )
    if manifest is None and not allow_unsealed:
        raise UnsealedRecordingError(f"{path}: no manifest: {report.describe()}")
    return report


def read_events(chunks: tuple[Path, ...] | list[Path]) -> Iterator[Event]:
    """The events of ``chunks`` in order (a report's verified chunks, or for playing
    without a key, every chunk file in the folder)."""
    for chunk in chunks:
        with chunk.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    t, channel, kind, data = orjson.loads(line)
                    yield float(t), channel, str(kind), data
                except (ValueError, TypeError):  # orjson's JSONDecodeError is a ValueError
                    raise MalformedEventError(
                        f"line {number} is not an event (a JSON array: time, channel, kind, data)",
                        path=chunk,
                    ) from None


def chunk_files(path: Path) -> list[Path]:
    """Every chunk file in the folder, in order, verified or not."""
    return [path / name for name in sorted(_names(path)) if CHUNK_RE.match(name)]


# Parts ------------------------------------------------------------------------------------


def _names(path: Path) -> list[str]:
    return [entry.name for entry in path.iterdir()]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RecordingFileMissingError("missing from the recording", path=path) from None
    except OSError as exc:
        raise RecordingIntegrityError(f"cannot be read: {exc.strerror}", path=path) from exc


def _json_object(path: Path, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise RecordingIntegrityError(f"not valid JSON: {exc}", path=path) from exc
    if not isinstance(value, dict):
        raise RecordingIntegrityError("expected a JSON object", path=path)
    return value


def _read_chain(path: Path, link: bytes) -> tuple[list[str], bytes, bool]:
    """The chained chunks' sha256 (hex, in order), the last link, and whether a partial
    last line (a crash mid-append) was left out."""
    text = _read(path / CHAIN).decode("ascii", errors="replace")
    lines = text.split("\n")
    partial = lines.pop() != ""  # the text after the last newline
    digests: list[str] = []
    for number, line in enumerate(lines, start=1):
        parsed = parse_chain_line(line)
        if parsed is None:
            raise ChainEditedError(
                f"line {number}: expected '<n> <sha256> <link>', found {line[:80]!r}",
                path=path / CHAIN,
            )
        n, digest, found = parsed
        if n != number:
            raise ChainEditedError(
                f"line {number}: expected chunk {number}, found chunk {n}", path=path / CHAIN
            )
        link = next_link(link, n, bytes.fromhex(digest))
        if found != link.hex():
            raise ChainEditedError(
                f"line {number}: expected link {link.hex()}, found {found} (the chain was "
                f"edited here{' or ' + HEADER + ' was' if number == 1 else ' or before'})",
                path=path / CHAIN,
            )
        digests.append(digest)
    return digests, link, partial


def _check_signature(
    path: Path, manifest: dict[str, Any], public: ec.EllipticCurvePublicKey
) -> None:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    expected = key_id(public)
    if manifest.get("key_id") != expected:
        raise RecordingSignatureError(
            f"signed by key {str(manifest.get('key_id'))[:16]}…, expected key {expected[:16]}… "
            "(the key given is not the one that sealed it, or the manifest was replaced)",
            path=path,
        )
    try:
        public.verify(
            bytes.fromhex(str(manifest.get("signature"))), canonical(body), SIGNATURE_ALGORITHM
        )
    except (InvalidSignature, ValueError) as exc:
        raise RecordingSignatureError(
            "the signature does not verify with the audit public key (the manifest was edited)",
            path=path,
        ) from exc
    if manifest.get("format") != FORMAT:
        raise ManifestMismatchError(f"expected format {FORMAT!r}", path=path)


def _check_header(
    where: Path, manifest: dict[str, Any], header: dict[str, Any], header_bytes: bytes
) -> None:
    """The signed manifest seals this folder's session header."""
    if manifest.get("header_sha256") != hashlib.sha256(header_bytes).hexdigest():
        raise ManifestMismatchError(
            f"it seals another session header than {HEADER} (the header was edited or swapped)",
            path=where,
        )
    for field in ("window_id", "session_id", "engineer", "host", "started_at"):
        if manifest.get(field) != header.get(field):
            raise ManifestMismatchError(
                f"{field}: the manifest says {manifest.get(field)!r}, {HEADER} says "
                f"{header.get(field)!r}",
                path=where,
            )


def _check_sealed_chain(
    path: Path, manifest: dict[str, Any], chained: list[str], last_link: bytes, partial: bool
) -> None:
    """The chain file holds the chunks and the last link that the signed manifest seals."""
    entries = manifest.get("chunks")
    if not isinstance(entries, list) or not all(isinstance(c, dict) for c in entries):
        raise ManifestMismatchError("expected a list of chunks", path=path / MANIFEST)
    for number, entry in enumerate(entries, start=1):
        if entry.get("name") != chunk_name(number):
            raise ManifestMismatchError(
                f"chunk {number} is not named {chunk_name(number)}", path=path / MANIFEST
            )
    sealed = [str(entry.get("sha256")) for entry in entries]
    for number, (signed, found) in enumerate(zip(sealed, chained, strict=False), start=1):
        if signed != found:
            raise ChainEditedError(
                f"line {number}: chunk {number} is chained as {found}, the signed manifest "
                f"seals {signed}",
                path=path / CHAIN,
            )
    if len(sealed) != len(chained) or manifest.get("last_link") != last_link.hex() or partial:
        raise ChainEditedError(
            f"expected {len(sealed)} chunks ending in link {manifest.get('last_link')}, as the "
            f"signed manifest says; the chain has {len(chained)}"
            + (" and a partial line" if partial else "")
            + f" ending in {last_link.hex()}",
            path=path / CHAIN,
        )


def _check_chunks(path: Path, chained: list[str], on_disk: dict[int, Path]) -> None:
    """Every chained chunk is there with the bytes chained for it."""
    found = {n: _sha256(file) for n, file in on_disk.items()}
    holder = {digest: n for n, digest in found.items()}
    position = {digest: n for n, digest in enumerate(chained, start=1)}
    for number, expected in enumerate(chained, start=1):
        name = chunk_name(number)
        actual = found.get(number)
        if actual == expected:
            continue
        if actual is None:
            moved = holder.get(expected)
            if moved is not None:
                raise ChunksReorderedError(
                    f"{name} is missing and {on_disk[moved].name} holds what the chain "
                    f"gives chunk {number}: chunks were renumbered",
                    path=path,
                )
            raise RecordingFileMissingError(
                f"chunk {number} ({name}) is missing; the chain names it", path=path / name
            )
        if actual in position:
            raise ChunksReorderedError(
                f"it holds what the chain gives chunk {position[actual]}, not chunk {number}: "
                "chunks were swapped",
                path=path / name,
            )
        line = _first_bad_line(on_disk[number])
        at = (
            f"line {line} is not an event in order"
            if line
            else "every line is still well-formed, so the changed line cannot be named"
        )
        raise ChunkAlteredError(
            f"chunk {number}: expected sha256 {expected}, found {actual}; {at}",
            path=path / name,
            chunk=number,
            line=line,
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _first_bad_line(path: Path) -> int | None:
    """The first line of an altered chunk that is not a well-formed event after the one
    before it; None when a change left every line well-formed."""
    previous = 0.0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                t, channel, kind, _data = orjson.loads(line)
                good = (
                    isinstance(t, int | float)
                    and t >= previous
                    and (channel is None or isinstance(channel, int))
                    and kind in KINDS
                    and line.endswith(b"\n")
                )
            except (orjson.JSONDecodeError, ValueError, TypeError):
                good = False
            if not good:
                return number
            previous = float(t)
    return None


def _count(chunks: tuple[Path, ...]) -> tuple[int, float]:
    """How many events the chunks hold, and the last one's time."""
    events, last = 0, 0.0
    for chunk in chunks:
        data = chunk.read_bytes()
        events += data.count(b"\n")
        end = data.rstrip(b"\n").rfind(b"\n")
        tail = data[end + 1 :].strip()
        if tail:
            last = float(orjson.loads(tail)[0])
    return events, last
