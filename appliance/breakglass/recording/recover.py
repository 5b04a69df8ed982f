"""Recordings cut short (the proxy killed, the host down) are sealed at the proxy's next start.

A recorder that dies cannot seal its recording, and its session has ended with it (fail
closed). Left so, the recording would verify only with ``--allow-unsealed``, and the audit
log would hold no record of the session at all. At its next start the proxy seals each such
recording over what its chain covers and appends its record, so that the window's evidence
lists the session like any other, and says how it ended.

What the seal says, signed: the end reason "cut short", when the recovery sealed it, and
the bytes written after the last chained chunk, which no chain link covers. Those bytes
are kept beside the chunks (``tail-NNNNNN.jsonl``, its size and sha256 in the manifest)
for a person to read, never played or verified as part of the recording. A partial last
line of the chain (a crash mid-append) is cut off first; its length is in the manifest.
The time the session ended is the last write to the folder: the best the disk knows.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from appliance._fsutil import fsync_dir
from appliance.audit.format import timestamp
from appliance.audit.recordings.layout import CHAIN, CHUNK_RE, HEADER, MANIFEST
from appliance.audit.recordings.verify import verify_recording
from appliance.breakglass.recording.interface import (
    RecordingError,
    SealedRecording,
    SessionInfo,
)
from appliance.breakglass.recording.seal import sign_manifest, write_manifest

__all__ = ["CUT_SHORT", "Recovered", "seal_cut_short", "unsealed_folders"]

log = logging.getLogger(__name__)

#: The end reason of a recording sealed at recovery.
CUT_SHORT = "cut short: the recorder stopped before its seal"


@dataclass(frozen=True)
class Recovered:
    """A recording sealed at recovery, and whose session it was."""

    info: SessionInfo
    sealed: SealedRecording


def unsealed_folders(root: Path) -> Iterator[Path]:
    """Every recording folder under ``root`` (``window-ID/SESSION``) with a header and no
    manifest, oldest window first."""
    if not root.is_dir():
        return
    for window in sorted(root.glob("window-*")):
        for folder in sorted(window.iterdir()):
            if (folder / HEADER).is_file() and not (folder / MANIFEST).exists():
                yield folder


def seal_cut_short(folder: Path, key: ec.EllipticCurvePrivateKey) -> Recovered:
    """Seal ``folder``'s recording over its chained chunks; RecordingError (or one of its
    kind from verification) when its chain or chunks do not verify."""
    ended = _last_write(folder)  # before this function changes anything in it
    partial = _cut_partial_chain_line(folder / CHAIN)
    report = verify_recording(folder, key.public_key(), allow_unsealed=True)
    tails: list[dict[str, str | int]] = []
    kept_aside = 0
    for path in sorted(folder.iterdir()):
        match = CHUNK_RE.match(path.name)
        if match is None or int(match[1]) <= len(report.chunks):
            continue
        kept = path.with_name(f"tail-{match[1]}.jsonl")
        data = path.read_bytes()
        path.rename(kept)
        kept_aside += len(data)
        tails.append(
            {"name": kept.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    fsync_dir(folder)
    header = (folder / HEADER).read_bytes()
    body = {
        "window_id": report.window_id,
        "session_id": report.session_id,
        "engineer": report.engineer,
        "host": report.host,
        "started_at": report.started_at,
        "ended_at": timestamp(ended),
        "duration": report.duration,
        "end_reason": CUT_SHORT,
        "header_sha256": hashlib.sha256(header).hexdigest(),
        "chunks": [
            {"name": c.name, "size": c.stat().st_size, "sha256": _sha256(c)} for c in report.chunks
        ],
        "last_link": report.last_link,
        "events": report.events,
        "channels": {},
        "recovered": {
            "sealed_at": timestamp(datetime.now(UTC)),
            "unchained": tails,
            "partial_chain_line_bytes": partial,
        },
    }
    digest = write_manifest(folder, sign_manifest(body, key))
    info = SessionInfo(report.window_id, report.session_id, report.engineer, report.host)
    sealed = SealedRecording(folder, digest, len(report.chunks), CUT_SHORT)
    log.warning(
        "sealed recording %s, cut short: %d chained chunks, %d bytes after them kept aside",
        folder,
        len(report.chunks),
        kept_aside,
    )
    return Recovered(info, sealed)


def _cut_partial_chain_line(chain: Path) -> int:
    """Drop the text after the chain's last newline (a crash mid-append); its length."""
    try:
        data = chain.read_bytes()
    except FileNotFoundError:
        raise RecordingError(f"{chain}: the recording has no chain file") from None
    keep = data.rfind(b"\n") + 1
    if keep == len(data):
        return 0
    with chain.open("r+b") as handle:
        handle.truncate(keep)
        os.fsync(handle.fileno())
    return len(data) - keep


def _last_write(folder: Path) -> datetime:
    latest = max(p.stat().st_mtime for p in folder.iterdir())
    return datetime.fromtimestamp(latest, UTC)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
