"""The recorder: a :class:`SessionRecording` that writes each event to disk as it happens.

Each call writes its event with ``os.write`` before it returns (the proxy forwards the
bytes only then), so a killed proxy loses nothing it forwarded. A chunk is closed after
``chunk_bytes`` or ``chunk_seconds``: its sha256 (kept as its lines are written) and its
link are computed then, and its ``fsync``, the folder's and the chain line's append and
``fsync`` are done in order by a thread of the recording's own
(:mod:`appliance.audit.recordings.layout`), so that a large output does not wait for
the disk at every chunk: the event path only writes. At most one closed chunk waits for
that thread; the next chunk's close waits for it. Any failure to write (a full disk, an
I/O error, the folder removed) raises :class:`RecordingError`, and so does every call
after it: the proxy ends the session, and what was chained still verifies. A failed
``fsync`` in the thread is raised by the first call after it failed, or by ``tick`` (which
waits for the thread: the proxy calls it each second) or ``end``, whichever comes first.

Files are opened through an injectable ``opener`` so that tests can make a write fail
with ``ENOSPC`` without filling a disk. Not for threads racing on one session beyond its
lock: the proxy's event loop calls it.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import errno
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from appliance._fsutil import atomic_write_bytes, fsync_dir
from appliance.audit.format import timestamp
from appliance.audit.recordings.layout import (
    CHAIN,
    FORMAT,
    HEADER,
    chain_line,
    chunk_name,
    encode_data,
    first_link,
    next_link,
)
from appliance.breakglass.recording.echo import DEFAULT_MAX_PENDING, EchoMatcher
from appliance.breakglass.recording.interface import (
    ChannelKind,
    RecordingError,
    SealedRecording,
    SessionInfo,
)
from appliance.breakglass.recording.seal import sign_manifest, write_manifest

__all__ = [
    "FileRecording",
    "RecorderLimits",
    "Sink",
    "open_sink",
    "recording_folder",
    "start_recording",
]

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class RecorderLimits:
    """When a chunk is closed (fsynced and chained), and how much typed input waits.

    8 MiB chunks cost a 100 MB ``cat`` about a dozen fsyncs; 10 seconds bounds what a
    crash leaves unchained in a quiet session (benchmarks/recording.py).
    """

    chunk_bytes: int = 8 * 1024 * 1024
    chunk_seconds: float = 10.0
    max_pending_echo: int = DEFAULT_MAX_PENDING


class Sink(Protocol):
    """A file being appended to: the recorder's only way to write."""

    def write(self, data: bytes) -> None:
        """Write all of ``data`` (the OS has it when this returns) or raise OSError."""

    def sync(self) -> None:
        """fsync."""

    def removed(self) -> bool:
        """Whether the file was unlinked since it was opened (its folder removed)."""

    def close(self) -> None:
        """Close; idempotent."""


class _FileSink:
    """An ``O_APPEND`` file descriptor, written without a userspace buffer."""

    def __init__(self, path: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)

    def write(self, data: bytes) -> None:
        written = os.write(self._fd, data)
        if written != len(data):  # a short write: rare, finish it
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(self._fd, view) :]

    def sync(self) -> None:
        os.fsync(self._fd)

    def removed(self) -> bool:
        return os.fstat(self._fd).st_nlink == 0

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def open_sink(path: Path) -> Sink:
    """Create ``path`` (0600, must not exist) for appending."""
    return _FileSink(path)


def recording_folder(root: Path, info: SessionInfo) -> Path:
    """Where the recording of ``info``'s session lives: ``ROOT/window-ID/SESSION``."""
    if not _SESSION_ID.match(info.session_id):
        raise RecordingError(
            f"session id {info.session_id!r} cannot name a folder: expected letters, digits, "
            "'.', '_' or '-', at most 128, not starting with '.'"
        )
    return root / f"window-{info.window_id}" / info.session_id


@dataclass
class _Channel:
    """What the manifest says of a channel."""

    type: str
    term: str = ""
    width: int = 0
    height: int = 0
    output_bytes: int = 0
    input_bytes: int = 0
    inputs: int = 0
    typed_bytes: int = 0
    typed_inputs: int = 0
    command: str | None = None
    exit_status: int | None = None
    transfers: int = 0
    upload_bytes: int | None = None  # SFTP and scp channels only
    download_bytes: int | None = None
    opened_at: float = 0.0
    closed_at: float | None = None

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class _Chunk:
    number: int
    sink: Sink
    started: float
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


def start_recording(
    root: Path,
    info: SessionInfo,
    key: ec.EllipticCurvePrivateKey,
    *,
    limits: RecorderLimits | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    opener: Callable[[Path], Sink] = open_sink,
) -> FileRecording:
    """Make the session's folder (0700, new) and header, and return its recorder.

    ``key`` signs the seal: the audit log's key (:func:`appliance.audit.signing_key.load_key`).
    """
    folder = recording_folder(root, info)
    started_at = wall()
    header = {
        "format": FORMAT,
        "window_id": info.window_id,
        "session_id": info.session_id,
        "engineer": info.engineer,
        "host": info.host,
        "started_at": timestamp(started_at),
    }
    data = orjson.dumps(header, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    try:
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
        atomic_write_bytes(folder / HEADER, data, mode=0o600)
        chain = opener(folder / CHAIN)
    except FileExistsError:
        raise RecordingError(f"{folder}: a recording of session {info.session_id} exists") from None
    except OSError as exc:
        raise RecordingError(f"{folder}: cannot start the recording: {exc}") from exc
    return FileRecording(
        folder,
        info,
        key,
        header=data,
        started_at=started_at,
        chain=chain,
        limits=limits or RecorderLimits(),
        monotonic=monotonic,
        wall=wall,
        opener=opener,
    )


class FileRecording:
    """One session's recording in its folder; made by :func:`start_recording`."""

    def __init__(
        self,
        folder: Path,
        info: SessionInfo,
        key: ec.EllipticCurvePrivateKey,
        *,
        header: bytes,
        started_at: datetime,
        chain: Sink,
        limits: RecorderLimits,
        monotonic: Callable[[], float],
        wall: Callable[[], datetime],
        opener: Callable[[Path], Sink],
    ) -> None:
        self.folder = folder
        self.info = info
        self._key = key
        self._header_sha256 = hashlib.sha256(header).hexdigest()
        self._started_at = started_at
        self._chain = chain
        self._limits = limits
        self._monotonic = monotonic
        self._wall = wall
        self._opener = opener
        self._start = monotonic()
        self._link = first_link(header)
        self._chunk: _Chunk | None = None
        self._closed: list[dict[str, Any]] = []  # name, size, sha256 of each chained chunk
        self._channels: dict[int, _Channel] = {}
        self._echo: dict[int, EchoMatcher] = {}
        self._inputs = 0
        self._events = 0
        self._failed: str | None = None
        self._lock = threading.Lock()
        self._syncer: concurrent.futures.ThreadPoolExecutor | None = None
        self._syncing: concurrent.futures.Future[None] | None = None

    # The SessionRecording protocol -------------------------------------------------------

    def channel_opened(
        self, channel: int, kind: ChannelKind, *, term: str = "", width: int = 0, height: int = 0
    ) -> None:
        """A channel opened: its kind and, for a PTY, terminal type and size."""
        with self._lock:
            t = self._write(
                channel, "open", {"type": kind, "term": term, "width": width, "height": height}
            )
            self._channels[channel] = _Channel(kind, term, width, height, opened_at=t)
            self._echo[channel] = EchoMatcher(self._limits.max_pending_echo)

    def output(self, channel: int, data: bytes) -> None:
        """Bytes from the target; also the echo that turns waiting input into text."""
        with self._lock:
            try:
                self._write(channel, "output", data.decode("utf-8"))
            except UnicodeDecodeError:
                self._write(channel, "output", None, base64_of=data)
            state = self._channels.get(channel)
            if state is not None:
                state.output_bytes += len(data)
            matcher = self._echo.get(channel)
            if matcher is None:
                return
            for number, typed in matcher.output(data):
                self._write(channel, "typed", {"n": number, "data": encode_data(typed)})
                if state is not None:
                    state.typed_bytes += len(typed)
                    state.typed_inputs += 1

    def input(self, channel: int, data: bytes) -> None:
        """Bytes from the vendor: their length now, their text once echoed."""
        with self._lock:
            number = self._inputs + 1
            self._write(channel, "input", {"n": number, "len": len(data)})
            self._inputs = number
            state = self._channels.get(channel)
            if state is not None:
                state.input_bytes += len(data)
                state.inputs += 1
            matcher = self._echo.get(channel)
            if matcher is not None:
                matcher.typed(number, data)

    def resize(self, channel: int, width: int, height: int) -> None:
        """The vendor's terminal changed size."""
        with self._lock:
            self._write(channel, "resize", {"width": width, "height": height})

    def exec_request(self, channel: int, command: str) -> None:
        """A command asked for instead of a shell."""
        with self._lock:
            self._write(channel, "exec", {"command": command})
            state = self._channels.get(channel)
            if state is not None:
                state.command = command

    def exit_status(self, channel: int, status: int) -> None:
        """The target's exit status for the channel."""
        with self._lock:
            self._write(channel, "exit", {"status": status})
            state = self._channels.get(channel)
            if state is not None:
                state.exit_status = status

    def transfer(self, channel: int, op: str, details: Mapping[str, Any]) -> None:
        """One file operation of an SFTP or scp channel; a close says what moved."""
        with self._lock:
            self._write(channel, "transfer", {"op": op, **details})
            state = self._channels.get(channel)
            if state is not None and op == "close":
                up, down = details.get("upload"), details.get("download")
                if isinstance(up, Mapping):
                    state.upload_bytes = (state.upload_bytes or 0) + int(up["bytes"])
                if isinstance(down, Mapping):
                    state.download_bytes = (state.download_bytes or 0) + int(down["bytes"])
                if up or down:
                    state.transfers += 1

    def forward_request(self, kind: str, host: str, port: int, *, allowed: bool) -> None:
        """A port forwarding asked for, and whether the proxy allowed it."""
        with self._lock:
            self._write(
                None, "forward", {"kind": kind, "host": host, "port": port, "allowed": allowed}
            )

    def channel_closed(self, channel: int) -> None:
        """The channel closed: input still waiting for its echo stays length-only."""
        with self._lock:
            t = self._write(channel, "close", None)
            self._echo.pop(channel, None)
            state = self._channels.get(channel)
            if state is not None:
                state.closed_at = t

    def end(self, reason: str) -> SealedRecording:
        """Close and chain the last chunk, then sign and write the manifest (the seal)."""
        with self._lock:
            self._check()
            try:
                if self._chunk is not None:
                    self._close_chunk()
                self._wait_for_sync()
                if self._chain.removed():
                    raise OSError(errno.ENOENT, "the recording's folder was removed")
                self._chain.close()
                ended = self._wall()
                body = {
                    "window_id": self.info.window_id,
                    "session_id": self.info.session_id,
                    "engineer": self.info.engineer,
                    "host": self.info.host,
                    "started_at": timestamp(self._started_at),
                    "ended_at": timestamp(ended),
                    "duration": self._now(),
                    "end_reason": reason,
                    "header_sha256": self._header_sha256,
                    "chunks": self._closed,
                    "last_link": self._link.hex(),
                    "events": self._events,
                    "channels": {str(n): c.summary() for n, c in sorted(self._channels.items())},
                }
                digest = write_manifest(self.folder, sign_manifest(body, self._key))
            except OSError as exc:
                raise self._fail(exc) from exc
            self._failed = "the recording is sealed; it takes no more events"
            self._stop_syncer()
            return SealedRecording(self.folder, digest, len(self._closed), reason)

    # More than the protocol ----------------------------------------------------------------

    def tick(self) -> None:
        """Close the open chunk if it is older than ``chunk_seconds``; for an idle timer,
        so a quiet session's last events are chained without waiting for the next one.
        Returns once every closed chunk is chained (or raises what stopped it)."""
        with self._lock:
            self._check()
            chunk = self._chunk
            try:
                if chunk is not None and self._now() - chunk.started >= self._limits.chunk_seconds:
                    self._close_chunk()
                self._wait_for_sync()
            except OSError as exc:
                raise self._fail(exc) from exc

    @property
    def failed(self) -> str | None:
        """Why the recording takes no more events (failed or sealed), or None."""
        return self._failed

    # Writing -----------------------------------------------------------------------------

    def _now(self) -> float:
        return round(self._monotonic() - self._start, 6)

    def _check(self) -> None:
        if self._failed is not None:
            raise RecordingError(f"{self.folder}: {self._failed}")
        syncing = self._syncing
        if syncing is not None and syncing.done():
            self._syncing = None
            exc = syncing.exception()
            if isinstance(exc, OSError):
                raise self._fail(exc) from exc
            if exc is not None:
                raise exc

    def _write(
        self, channel: int | None, kind: str, data: Any, *, base64_of: bytes | None = None
    ) -> float:
        """Write one event; returns its time. Raises RecordingError (and stays failed).

        ``base64_of``: bytes that are not UTF-8, stored as ``{"b64": ...}`` (layout's
        ``encode_data``) by putting the line together here: base64 needs no JSON escaping,
        and binary output is recorded about twice as fast as by serialising the string.
        """
        self._check()
        t = self._now()
        try:
            if base64_of is not None:
                head = orjson.dumps([t, channel, kind])[:-1]
                line = b'%s,{"b64":"%s"}]\n' % (head, base64.b64encode(base64_of))
            else:
                line = orjson.dumps([t, channel, kind, data], option=orjson.OPT_APPEND_NEWLINE)
            chunk = self._chunk
            if chunk is None:
                number = len(self._closed) + 1
                chunk = _Chunk(number, self._opener(self.folder / chunk_name(number)), t)
                self._chunk = chunk
            chunk.sink.write(line)
            chunk.digest.update(line)
            chunk.size += len(line)
            self._events += 1
            if (
                chunk.size >= self._limits.chunk_bytes
                or t - chunk.started >= self._limits.chunk_seconds
            ):
                self._close_chunk()
        except OSError as exc:
            raise self._fail(exc) from exc
        return t

    def _close_chunk(self) -> None:
        """fsync the open chunk, append its link to the chain and fsync that."""
        chunk = self._chunk
        if chunk is None:
            return
        if chunk.sink.removed():
            raise OSError(errno.ENOENT, "the recording's folder was removed")
        self._wait_for_sync()  # at most one closed chunk waits for the disk
        self._chunk = None
        digest = chunk.digest.digest()
        link = next_link(self._link, chunk.number, digest)
        self._link = link
        self._closed.append(
            {"name": chunk_name(chunk.number), "size": chunk.size, "sha256": digest.hex()}
        )
        if self._syncer is None:
            self._syncer = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"recording-{self.info.session_id[:16]}"
            )
        self._syncing = self._syncer.submit(
            self._sync_chunk, chunk.sink, chain_line(chunk.number, digest, link)
        )

    def _sync_chunk(self, sink: Sink, chain_entry: bytes) -> None:
        """In the recording's thread: the chunk's bytes and name reach the disk, then its
        link is appended to the chain and reaches the disk (so a chain never names a chunk
        that a power loss could take back)."""
        try:
            sink.sync()
        finally:
            sink.close()
        fsync_dir(self.folder)  # the chunk's name survives a power loss, as its bytes do
        self._chain.write(chain_entry)
        self._chain.sync()

    def _wait_for_sync(self) -> None:
        """Wait for the closed chunk being synced; raise the OSError that stopped it."""
        syncing, self._syncing = self._syncing, None
        if syncing is not None:
            syncing.result()

    def _stop_syncer(self) -> None:
        if self._syncer is not None:
            self._syncer.shutdown(wait=True)
            self._syncer = None

    def _fail(self, exc: OSError) -> RecordingError:
        """Stop for good: close what is open, say why (ENOSPC, EIO, folder gone)."""
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        self._failed = f"the recording failed ({reason}) and takes no more events"
        syncing, self._syncing = self._syncing, None
        if syncing is not None:  # let it finish before its files are closed under it
            with contextlib.suppress(Exception):
                syncing.result()
        self._stop_syncer()
        for sink in (self._chunk.sink if self._chunk else None, self._chain):
            if sink is not None:
                with contextlib.suppress(OSError):
                    sink.close()
        self._chunk = None
        return RecordingError(f"{self.folder}: cannot write the recording: {exc}")
