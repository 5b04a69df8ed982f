"""File transfers relayed to the target and recorded: SFTP, and scp in both its protocols.

The proxy's SFTP subsystem is :class:`RecordedSftp`, an asyncssh ``SFTPServer`` that
serves no file of its own: every operation is relayed to an asyncssh SFTP client on the
session's connection to the target, so the target's sshd and its permissions decide, as
they would for a direct login. No SFTP is written by hand; asyncssh parses and answers the
vendor's requests and makes the target's.

What is recorded (``transfer`` events, :mod:`appliance.audit.recordings.layout`), each
written before what it describes moves on:

* every request that names a path (open, stat, list, remove, rename, mkdir, rmdir,
  setstat, symlink, link, realpath, readlink, statvfs), before it is sent to the target;
* every write (handle, offset, length) before its bytes are sent to the target, and
  every read (handle, offset, length) after the target answered and before its bytes are
  sent to the vendor; a directory listing's names before they are sent to the vendor;
* at close, per opened file and per direction: the bytes moved, the sha256 of those bytes
  *in the order they moved*, the ranges of offsets they covered, and whether they moved
  in order from offset 0 (``in_order``). ``in_order`` with ranges ``[[0, size]]`` means
  the sha256 is that of the file's first ``size`` bytes as moved: the whole file when
  the vendor read or wrote all of it, which is what ``sftp get``/``put`` and ``scp`` do.
  A file read at random offsets keeps its sha256 of the bytes as they moved and says so;
* a request the target refused (its SFTP status), after the refusal came back.

The asyncssh server handles one request at a time per channel (it awaits each), so the
events of a channel are in the order its requests were answered.

Legacy scp (``scp -O``: an exec request ``scp -t``/``scp -f``) is *recorded, not
refused*: asyncssh's scp server (``allow_scp``) runs it over this same class, so its files
are recorded exactly as SFTP's are, with the command as the channel's exec event. Refusing
it would have been simpler, but old clients and scripts still use it, and the refusal
would push a vendor towards ``cat`` over a shell, which the recording keeps as output
only. Modern OpenSSH ``scp`` speaks SFTP anyway. A command naming scp by another path
(``/usr/bin/scp -t``) would reach the target as a plain command: the proxy refuses it
(:func:`is_disguised_scp`), so no file moves unrecorded as scp.

Fail closed: when the recording cannot be written, the session ends at once (both
connections cut off) and the request that could not be recorded is neither sent on nor
answered.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import logging
import os
import shlex
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncssh
from asyncssh import SFTPAttrs, SFTPClient, SFTPClientFile, SFTPName, SFTPVFSAttrs

from appliance.audit.recordings.layout import encode_data
from appliance.breakglass.recording.interface import RecordingError, SessionRecording

__all__ = ["MovedBytes", "RecordedSftp", "is_disguised_scp"]

log = logging.getLogger("appliance.breakglass.shell")

_FLAGS = (
    (asyncssh.FXF_READ, "read"),
    (asyncssh.FXF_WRITE, "write"),
    (asyncssh.FXF_APPEND, "append"),
    (asyncssh.FXF_CREAT, "create"),
    (asyncssh.FXF_TRUNC, "truncate"),
    (asyncssh.FXF_EXCL, "exclusive"),
)
_NO_HOLE = 1 << 63
_ATTRS = ("size", "uid", "gid", "permissions", "atime", "mtime")


def is_disguised_scp(command: str) -> bool:
    """Whether ``command`` runs scp's server side other than as ``scp ...`` (which asyncssh
    hands to :class:`RecordedSftp`): such a command is refused, not relayed."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return bool(words) and words[0] != "scp" and words[0].rsplit("/", 1)[-1] == "scp"


class MovedBytes:
    """The bytes that moved one way through one opened file.

    ``sha256`` is over the bytes in the order they moved (hashed as they pass, by hashlib
    in C); ``ranges`` are the offsets they covered, merged; ``in_order`` says each piece
    started where the one before it ended, the first at offset 0.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self.in_order = True
        self.ranges: list[list[int]] = []
        self._digest = hashlib.sha256()
        self._next = 0

    def add(self, offset: int, data: bytes) -> None:
        """``data`` moved at ``offset``."""
        size = len(data)
        if not size:
            return
        self._digest.update(data)
        self.bytes += size
        if offset != self._next:
            self.in_order = False
        self._next = offset + size
        end = offset + size
        last = self.ranges[-1] if self.ranges else None
        if last is not None and last[0] <= offset <= last[1]:
            last[1] = max(last[1], end)
            return
        where = bisect.bisect_left(self.ranges, [offset, end])
        self.ranges.insert(where, [offset, end])
        merged: list[list[int]] = []
        for start, stop in self.ranges:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], stop)
            else:
                merged.append([start, stop])
        self.ranges = merged

    def summary(self) -> dict[str, Any]:
        """What the close event says of this direction."""
        return {
            "bytes": self.bytes,
            "sha256": self._digest.hexdigest(),
            "in_order": self.in_order,
            "ranges": self.ranges,
        }


class _OpenFile:
    """One file the vendor opened: the target's file, and what moved through it."""

    def __init__(self, handle: int, path: bytes, file: SFTPClientFile | None) -> None:
        self.handle = handle
        self.path = path
        self.file = file
        self.read = MovedBytes()
        self.written = MovedBytes()

    def seek(self, offset: int, whence: int) -> int:
        """For asyncssh's answer to a client asking where a sparse file holds data
        (``ranges@asyncssh.com``), which seeks the file object: every byte may hold data
        (the next hole is past any length asked about), so the client reads it all."""
        if whence == os.SEEK_DATA:
            return offset
        if whence == os.SEEK_HOLE:
            return _NO_HOLE
        raise OSError(errno.EINVAL, "the proxy's files are not seekable")


def _path(path: bytes) -> str | dict[str, str]:
    return encode_data(path)


def _name(entry: SFTPName) -> str | dict[str, str]:
    name = entry.filename
    return encode_data(name if isinstance(name, bytes) else name.encode("utf-8"))


def _attrs(attrs: SFTPAttrs) -> dict[str, int]:
    return {name: value for name in _ATTRS if (value := getattr(attrs, name)) is not None}


class RecordedSftp(asyncssh.SFTPServer):
    """One SFTP (or scp) channel of a vendor session, relayed to ``client`` on the target.

    Every method of asyncssh's ``SFTPServer`` that would touch the proxy's own files is
    overridden here (a unit test keeps it so). ``recording`` None (the session has ended)
    refuses every request; ``client`` None (the target refused SFTP) too, once recorded.
    """

    def __init__(
        self,
        chan: asyncssh.SSHServerChannel[bytes],
        *,
        channel: int,
        recording: SessionRecording | None,
        client: SFTPClient | None,
        fail: Callable[[RecordingError], None],
    ) -> None:
        super().__init__(chan)
        self._channel = channel
        self._recording = recording
        self._client = client
        self._fail = fail
        self._failed = recording is None
        self._handles = 0

    # Recording -----------------------------------------------------------------------------

    def _record(self, op: str, **details: Any) -> None:
        """Write the event, or end the session and refuse the request (never forwarded)."""
        if self._failed or self._recording is None:
            raise asyncssh.SFTPConnectionLost("the session ended")
        try:
            self._recording.transfer(self._channel, op, details)
        except RecordingError as exc:
            self._failed = True
            self._fail(exc)
            raise asyncssh.SFTPConnectionLost("the session ended: recording failed") from exc

    def _target(self) -> SFTPClient:
        if self._client is None:
            raise asyncssh.SFTPNoConnection("the target cannot be reached")
        return self._client

    def _refused(self, request: str, exc: asyncssh.SFTPError) -> None:
        if exc.code != asyncssh.FX_EOF:
            self._record("error", request=request, code=exc.code, reason=exc.reason)

    async def _relay_path(self, op: str, path: bytes, call: Any, **details: Any) -> Any:
        self._record(op, path=_path(path), **details)
        try:
            return await call
        except asyncssh.SFTPError as exc:
            self._refused(op, exc)
            raise

    # Files ---------------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> _OpenFile:
        """Open on the target; the open is recorded first."""
        self._handles += 1
        handle = self._handles
        flags = [name for bit, name in _FLAGS if pflags & bit]
        self._record("open", handle=handle, path=_path(path), flags=flags)
        try:
            file = await self._target().open(path, pflags, attrs, encoding=None)
        except asyncssh.SFTPError as exc:
            self._refused("open", exc)
            raise
        return _OpenFile(handle, path, file)

    async def open56(
        self, path: bytes, desired_access: int, flags: int, attrs: SFTPAttrs
    ) -> _OpenFile:
        """Not offered: the proxy speaks SFTP version 3 to the vendor."""
        raise asyncssh.SFTPOpUnsupported("SFTP versions 5 and 6 are not relayed")

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        """Read from the target; recorded before the bytes go to the vendor."""
        opened = _opened(file_obj)
        try:
            data: bytes = await opened.file.read(size, offset)  # type: ignore[union-attr]
        except asyncssh.SFTPError as exc:
            self._refused("read", exc)
            raise
        if data:
            self._record("read", handle=opened.handle, offset=offset, len=len(data))
            opened.read.add(offset, data)
        return data

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        """Write to the target; recorded before the bytes are sent."""
        opened = _opened(file_obj)
        self._record("write", handle=opened.handle, offset=offset, len=len(data))
        opened.written.add(offset, data)
        try:
            return await opened.file.write(data, offset)  # type: ignore[union-attr]
        except asyncssh.SFTPError as exc:
            self._refused("write", exc)
            raise

    async def close(self, file_obj: object) -> None:
        """Record what moved through the file (sizes, sha256), then close it on the target."""
        opened = _opened(file_obj)
        file, opened.file = opened.file, None
        if file is None:
            return
        if self._failed:  # asyncssh closes what is open when the session ends
            await _quietly(file.close())
            return
        moved: dict[str, Any] = {}
        if opened.written.bytes:
            moved["upload"] = opened.written.summary()
        if opened.read.bytes:
            moved["download"] = opened.read.summary()
        self._record("close", handle=opened.handle, path=_path(opened.path), **moved)
        await file.close()

    async def fstat(self, file_obj: object) -> SFTPAttrs:
        """The open file's attributes on the target."""
        return await _opened(file_obj).file.stat()  # type: ignore[union-attr]

    async def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        """Change the open file's attributes; recorded first."""
        opened = _opened(file_obj)
        self._record("fsetstat", handle=opened.handle, attrs=_attrs(attrs))
        await opened.file.setstat(attrs)  # type: ignore[union-attr]

    async def fstatvfs(self, file_obj: object) -> SFTPVFSAttrs:
        """The open file's file system on the target."""
        return await _opened(file_obj).file.statvfs()  # type: ignore[union-attr]

    async def fsync(self, file_obj: object) -> None:
        """fsync the open file on the target."""
        await _opened(file_obj).file.fsync()  # type: ignore[union-attr]

    async def lock(self, file_obj: object, offset: int, length: int, flags: int) -> None:
        """Not relayed."""
        raise asyncssh.SFTPOpUnsupported("byte range locks are not relayed")

    async def unlock(self, file_obj: object, offset: int, length: int) -> None:
        """Not relayed."""
        raise asyncssh.SFTPOpUnsupported("byte range locks are not relayed")

    # Paths ---------------------------------------------------------------------------------

    async def stat(self, path: bytes) -> SFTPAttrs:
        """stat on the target; recorded first."""
        result: SFTPAttrs = await self._relay_path("stat", path, self._target().stat(path))
        return result

    async def lstat(self, path: bytes) -> SFTPAttrs:
        """lstat on the target; recorded first."""
        result: SFTPAttrs = await self._relay_path("lstat", path, self._target().lstat(path))
        return result

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        """Change attributes on the target; recorded first."""
        await self._relay_path(
            "setstat", path, self._target().setstat(path, attrs), attrs=_attrs(attrs)
        )

    async def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        """Change a link's attributes on the target; recorded first."""
        await self._relay_path(
            "lsetstat",
            path,
            self._target().setstat(path, attrs, follow_symlinks=False),
            attrs=_attrs(attrs),
        )

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        """A directory's entries: the request recorded, then the names before they go."""
        self._record("list", path=_path(path))
        try:
            names = [name async for name in self._target().scandir(path)]
        except asyncssh.SFTPError as exc:
            self._refused("list", exc)
            raise
        self._record("listed", path=_path(path), names=[_name(n) for n in names])
        for name in names:
            yield name

    async def remove(self, path: bytes) -> None:
        """Remove a file on the target; recorded first."""
        await self._relay_path("remove", path, self._target().remove(path))

    async def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        """Make a directory on the target; recorded first."""
        await self._relay_path(
            "mkdir", path, self._target().mkdir(path, attrs), attrs=_attrs(attrs)
        )

    async def rmdir(self, path: bytes) -> None:
        """Remove a directory on the target; recorded first."""
        await self._relay_path("rmdir", path, self._target().rmdir(path))

    async def realpath(self, path: bytes) -> bytes:
        """The target's canonical path; recorded first."""
        result: bytes = await self._relay_path("realpath", path, self._target().realpath(path))
        return result

    async def readlink(self, path: bytes) -> bytes:
        """A link's target on the target; recorded first."""
        result: bytes = await self._relay_path("readlink", path, self._target().readlink(path))
        return result

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Rename on the target; recorded first."""
        await self._relay_path(
            "rename", oldpath, self._target().rename(oldpath, newpath), to=_path(newpath)
        )

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Rename over an existing file on the target; recorded first."""
        await self._relay_path(
            "rename",
            oldpath,
            self._target().posix_rename(oldpath, newpath),
            to=_path(newpath),
            replace=True,
        )

    async def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        """Make ``newpath`` a symbolic link to ``oldpath`` on the target; recorded first."""
        await self._relay_path(
            "symlink", newpath, self._target().symlink(oldpath, newpath), to=_path(oldpath)
        )

    async def link(self, oldpath: bytes, newpath: bytes) -> None:
        """Make ``newpath`` a hard link to ``oldpath`` on the target; recorded first."""
        await self._relay_path(
            "link", newpath, self._target().link(oldpath, newpath), to=_path(oldpath)
        )

    async def statvfs(self, path: bytes) -> SFTPVFSAttrs:
        """The file system of ``path`` on the target; recorded first."""
        result: SFTPVFSAttrs = await self._relay_path("statvfs", path, self._target().statvfs(path))
        return result

    def format_user(self, uid: int | None) -> str:
        """A uid as a number: this host's user names say nothing of the target's."""
        return "" if uid is None else str(uid)

    def format_group(self, gid: int | None) -> str:
        """A gid as a number, as :meth:`format_user`."""
        return "" if gid is None else str(gid)

    async def exit(self) -> None:
        """The channel ended: the target's SFTP session ends too, and the channel closes."""
        if self._client is not None:
            self._client.exit()
            await _quietly(self._client.wait_closed())
        if not self._failed and self._recording is not None:
            try:
                self._recording.channel_closed(self._channel)
            except RecordingError as exc:
                self._failed = True
                self._fail(exc)


def _opened(file_obj: object) -> _OpenFile:
    if not isinstance(file_obj, _OpenFile) or file_obj.file is None:
        raise asyncssh.SFTPInvalidHandle("the file is closed")
    return file_obj


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except (asyncssh.Error, OSError) as exc:
        log.debug("while closing: %s", exc)
