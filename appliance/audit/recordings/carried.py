"""Recordings checked against the audit log: in a window's evidence export, or in the store.

A sealed recording's audit record (``breakglass.recording``, :mod:`.evidence`) names its
window, session and folder and holds its manifest's sha256. This module is the one place
that defines how recordings travel in an audit export beside the records
(:mod:`appliance.audit.export` writes the members, :mod:`appliance.audit.verify` hands
them here)::

    recordings.json                               the index: this export is a window's
                                                  evidence and carries its recordings
    recordings/window-ID/SESSION/session.json     one folder per recording, as in the store
    recordings/window-ID/SESSION/chain            (ROOT/window-ID/SESSION)
    recordings/window-ID/SESSION/chunk-NNNNNN.jsonl
    recordings/window-ID/SESSION/manifest.json

The index marks the archive as evidence; its list is for people. What must be carried
comes from the verified records only: every ``breakglass.recording`` record in the export
names a recording that must be there, verify with the audit key (:func:`verify_recording`),
be of the record's window and have the manifest digest the record holds. A recording
the records do not name is refused too. Each failure names the recording, its session,
window and audit record, and why (a changed byte, a missing or reordered chunk, another
window's recording, another manifest).
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit.checkpoint import AuditIntegrityError
from appliance.audit.recordings.errors import (
    ChainEditedError,
    ChunkAlteredError,
    ChunksReorderedError,
    MalformedEventError,
    ManifestMismatchError,
    RecordingFileMissingError,
    RecordingSignatureError,
    UnexpectedChunkError,
    UnsealedRecordingError,
    WrongWindowError,
)
from appliance.audit.recordings.layout import CHAIN, CHUNK_RE, HEADER, MANIFEST
from appliance.audit.recordings.verify import RecordingReport, verify_recording
from appliance.errors import ApplianceError

__all__ = [
    "INDEX",
    "PREFIX",
    "CarriedRecordingError",
    "RecordedSession",
    "RecordingDigestMismatchError",
    "RecordingNotCarriedError",
    "UnrecordedRecordingError",
    "carry",
    "check_against_record",
    "is_carried_member",
    "store_folder",
    "verify_carried",
]

INDEX = "recordings.json"
PREFIX = "recordings/"
INDEX_FORMAT = "appliance-evidence-recordings/1"
#: The most recording files an export may carry (a chunk closes every 10 s at least).
MAX_CARRIED_FILES = 200_000
_WINDOW_DIR = re.compile(r"^window-([1-9][0-9]{0,9})$")
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # as the recorder's session ids
_FIXED_FILES = frozenset({HEADER, CHAIN, MANIFEST})
#: What each recording failure means, said first in the message.
_WHY = {
    ChunkAlteredError: "a chunk was changed",
    ChunksReorderedError: "chunks were reordered",
    RecordingFileMissingError: "a file of the recording is missing",
    UnexpectedChunkError: "a chunk was added",
    ChainEditedError: "the chain was edited",
    ManifestMismatchError: "the manifest does not match the recording",
    RecordingSignatureError: "the seal does not verify",
    MalformedEventError: "an event is malformed",
    WrongWindowError: "it is a recording of another window",
    UnsealedRecordingError: "it is not sealed",
}


class CarriedRecordingError(AuditIntegrityError):
    """A recording the audit log names is not there, not intact, or not the one recorded.

    ``cause`` is the recording's own error (:mod:`.errors`) when it failed to verify.
    """

    def __init__(self, message: str, *, member: str, cause: ApplianceError | None = None) -> None:
        super().__init__(message, hint=cause.hint if cause is not None else None)
        #: The recording's folder in the archive (``recordings/window-ID/SESSION``).
        self.member = member
        self.cause = cause


class RecordingNotCarriedError(CarriedRecordingError):
    """A ``breakglass.recording`` record names a recording the export does not carry."""


class UnrecordedRecordingError(CarriedRecordingError):
    """The export carries a recording that no record of the window names."""


class RecordingDigestMismatchError(CarriedRecordingError):
    """The recording verifies, but its manifest is not the one the audit log recorded."""


@dataclass(frozen=True)
class RecordedSession:
    """A sealed recording as its audit record names it."""

    seq: int
    window_id: int
    session_id: str
    engineer: str
    host: str
    folder: str
    manifest_sha256: str

    @classmethod
    def of(cls, seq: int, details: Mapping[str, Any]) -> RecordedSession:
        """From a ``breakglass.recording`` record's sequence number and details."""
        folder = str(details.get("folder", ""))
        window_id = details.get("window_id")
        if not _FOLDER.match(folder) or not isinstance(window_id, int) or window_id < 1:
            raise AuditIntegrityError(
                f"record {seq} (breakglass.recording): expected a window id and a session "
                f"folder, found window {window_id!r} and folder {folder!r}"
            )
        return cls(
            seq,
            window_id,
            str(details.get("session_id", "")),
            str(details.get("engineer", "")),
            str(details.get("host", "")),
            folder,
            str(details.get("manifest_sha256", "")),
        )

    @property
    def member(self) -> str:
        """Its folder in an export: ``recordings/window-ID/FOLDER``."""
        return f"{PREFIX}window-{self.window_id}/{self.folder}"

    def describe(self) -> str:
        """Who and which record, for messages."""
        return (
            f"session {self.session_id} of window {self.window_id}, engineer {self.engineer} "
            f"on {self.host}, audit record {self.seq}"
        )


def store_folder(root: Path, session: RecordedSession) -> Path:
    """Where the recorder wrote ``session`` under the store ``root`` (ROOT/window-ID/FOLDER)."""
    return root / f"window-{session.window_id}" / session.folder


def carry(root: Path, sessions: list[RecordedSession], *, target: str) -> dict[str, Path | bytes]:
    """The archive members that carry ``sessions`` from the store ``root``: the index and
    each recording's files. A recording not in the store is left out (the export's check
    then names it); only the recording's own regular files are carried, never a link."""
    members: dict[str, Path | bytes] = {}
    listed = []
    for session in sessions:
        folder = store_folder(root, session)
        files = _recording_files(folder)
        for file in files:
            members[f"{session.member}/{file.name}"] = file
        listed.append(
            {
                "record": session.seq,
                "path": session.member,
                "window_id": session.window_id,
                "session_id": session.session_id,
                "engineer": session.engineer,
                "host": session.host,
                "manifest_sha256": session.manifest_sha256,
                "carried": bool(files),
            }
        )
    index = {"format": INDEX_FORMAT, "target": target, "recordings": listed}
    return {INDEX: (json.dumps(index, indent=1) + "\n").encode(), **members}


def _recording_files(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [
        entry
        for entry in entries
        if _is_recording_file(entry.name) and entry.is_file() and not entry.is_symlink()
    ]


def _is_recording_file(name: str) -> bool:
    return name in _FIXED_FILES or CHUNK_RE.match(name) is not None


def is_carried_member(name: str) -> bool:
    """Whether ``name`` is a member that :func:`carry` writes (index or recording file)."""
    if name == INDEX:
        return True
    parts = name.split("/")
    return (
        len(parts) == 4
        and parts[0] + "/" == PREFIX
        and _WINDOW_DIR.match(parts[1]) is not None
        and _FOLDER.match(parts[2]) is not None
        and _is_recording_file(parts[3])
    )


def check_against_record(
    folder: Path, session: RecordedSession, public: ec.EllipticCurvePublicKey, *, shown: str
) -> RecordingReport:
    """Verify the recording in ``folder`` as the one ``session``'s record names: sealed,
    intact, of its window, with its manifest digest. ``shown`` names the folder in
    messages (its path in an archive, or in the store)."""
    try:
        report = verify_recording(folder, public, window_id=session.window_id)
    except (ApplianceError, OSError) as exc:
        cause = exc if isinstance(exc, ApplianceError) else None
        detail = str(exc).replace(f"{folder}/", f"{shown}/").replace(str(folder), shown)
        why = next((w for kind, w in _WHY.items() if isinstance(exc, kind)), "it does not verify")
        raise CarriedRecordingError(
            f"recording {shown} ({session.describe()}): {why}: {detail}",
            member=session.member,
            cause=cause,
        ) from exc
    if report.manifest_sha256 != session.manifest_sha256:
        raise RecordingDigestMismatchError(
            f"recording {shown} ({session.describe()}): its manifest's sha256 is "
            f"{report.manifest_sha256}, the audit record holds {session.manifest_sha256}: "
            "it is not the recording the log sealed (swapped for another one)",
            member=session.member,
        )
    return report


def verify_carried(
    archive: Path,
    tar: tarfile.TarFile,
    members: Mapping[str, tarfile.TarInfo],
    recorded: list[RecordedSession],
    public: ec.EllipticCurvePublicKey,
) -> list[RecordingReport]:
    """Check the recordings carried in ``archive`` (its ``members`` under ``recordings/``)
    against the ``recorded`` sessions of its verified records; raise at the first problem."""
    groups: dict[str, list[tarfile.TarInfo]] = {}
    for name, info in members.items():
        groups.setdefault(name.rsplit("/", 1)[0], []).append(info)
    reports: list[RecordingReport] = []
    named = {session.member for session in recorded}
    for member in sorted(set(groups) - named):
        raise UnrecordedRecordingError(
            f"{archive}: carries recording {member}, which no breakglass.recording record in "
            "the export names (a recording of another window, or added after the export)",
            member=member,
        )
    with tempfile.TemporaryDirectory(prefix="carried-recordings-") as tmp:
        for session in recorded:
            infos = groups.get(session.member)
            if not infos:
                raise RecordingNotCarriedError(
                    f"{archive}: the audit log names recording {session.member} "
                    f"({session.describe()}, manifest sha256 {session.manifest_sha256}) but "
                    "the export does not carry it (removed, or the store had lost it)",
                    member=session.member,
                )
            folder = Path(tmp) / session.member
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            for info in infos:
                handle = tar.extractfile(info)
                if handle is None:
                    raise AuditIntegrityError(f"{archive}: {info.name} is not a file")
                with handle, (folder / info.name.rsplit("/", 1)[1]).open("wb") as out:
                    shutil.copyfileobj(handle, out)
            reports.append(
                check_against_record(folder, session, public, shown=f"{archive}:{session.member}")
            )
            shutil.rmtree(folder)  # one recording on disk at a time
    return reports
