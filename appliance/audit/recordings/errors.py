"""Why a session recording does not verify: untrusted input, named to the chunk and line.

Tree::

    ApplianceError                          (appliance.errors)
    ├── RecordingIntegrityError             the recording is not what was recorded
    │   ├── RecordingFileMissingError       a file the chain or manifest names is not there
    │   ├── ChunkAlteredError               a chunk's bytes differ from its chained sha256
    │   ├── ChunksReorderedError            chunks swapped or renumbered
    │   ├── UnexpectedChunkError            a chunk that neither chain nor manifest names
    │   ├── ChainEditedError                the chain file does not link up
    │   ├── ManifestMismatchError           the signed manifest disagrees with the chunks
    │   ├── RecordingSignatureError         manifest edited, or signed by another key
    │   ├── MalformedEventError             a chunk line that is not an event
    │   └── WrongWindowError                a recording of another window than asked
    ├── UnsealedRecordingError              no manifest: cut short; refused unless allowed
    └── BreakglassError                     (appliance.breakglass.errors)
        └── RecordingError                  the recorder cannot write: end the session
                                            (appliance.breakglass.recording.interface)

Like the audit log's ``AuditIntegrityError``, these say the evidence is not trustworthy;
``RecordingError`` is an operational failure of the recorder and lives apart.
"""

from __future__ import annotations

from pathlib import Path

from appliance.errors import ApplianceError

__all__ = [
    "ChainEditedError",
    "ChunkAlteredError",
    "ChunksReorderedError",
    "MalformedEventError",
    "ManifestMismatchError",
    "RecordingFileMissingError",
    "RecordingIntegrityError",
    "RecordingSignatureError",
    "UnexpectedChunkError",
    "UnsealedRecordingError",
    "WrongWindowError",
]

_TAMPERED = (
    "treat the recording as altered: keep this copy as evidence and compare it with the "
    "window's evidence export and the audit record of its manifest (breakglass.recording)"
)


class RecordingIntegrityError(ApplianceError):
    """The recording, or a part of it, is not what the recorder wrote and sealed."""

    hint = _TAMPERED

    def __init__(self, message: str, *, path: Path, hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}", hint=hint)
        #: The file (or the recording's folder) found wrong.
        self.path = path


class RecordingFileMissingError(RecordingIntegrityError):
    """A file that the chain or the manifest names is not in the folder."""


class ChunkAlteredError(RecordingIntegrityError):
    """A chunk's bytes differ from the sha256 chained for it."""

    def __init__(self, message: str, *, path: Path, chunk: int, line: int | None) -> None:
        super().__init__(message, path=path)
        #: The chunk's number, and the first line found wrong in it when one could be.
        self.chunk = chunk
        self.line = line


class ChunksReorderedError(RecordingIntegrityError):
    """A chunk holds what the chain says another chunk held."""


class UnexpectedChunkError(RecordingIntegrityError):
    """A chunk file that a sealed recording does not name (added after the seal)."""


class ChainEditedError(RecordingIntegrityError):
    """The chain file's links do not follow from each other and the session header."""


class ManifestMismatchError(RecordingIntegrityError):
    """The manifest verifies but names other chunks, links or session than the folder."""


class RecordingSignatureError(RecordingIntegrityError):
    """The manifest's signature does not verify with the key given (edited or replaced)."""


class MalformedEventError(RecordingIntegrityError):
    """A line of a chunk is not an event ``[t, channel, kind, data]``."""


class WrongWindowError(RecordingIntegrityError):
    """The recording is of another window than the one it was presented for."""


class UnsealedRecordingError(ApplianceError):
    """No signed manifest: the session was cut short. Verifying it must be asked for."""

    hint = (
        "the session ended without a seal (the proxy stopped or the disk filled); pass "
        "--allow-unsealed to check and play what was chained, knowing no signature covers it"
    )
