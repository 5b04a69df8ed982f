"""A bundle as an ISO 9660 image, read in place: nothing is extracted or written.

Images written by ``appliance media write --format iso`` (:mod:`appliance.bundle.iso`) hold
one tree in three views that share every file's data: UDF 2.60, ISO 9660 level 4 with
Rock Ridge 1.09 (both keep exact names), and Joliet (for Windows).

:class:`IsoReader` reads the UDF view (the Rock Ridge one on an image without UDF) and,
where both exist, refuses an image whose UDF and Rock Ridge views disagree: a reader that
mounted the image could otherwise see other content than the one the verifier checked.
"""

from __future__ import annotations

import io
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from appliance.errors import MediaError
from appliance.media.reader import ClosingReader, Entry, Kind

__all__ = ["IsoReader"]

#: The mode of a regular file that carries no Rock Ridge mode of its own.
_FILE_MODE = 0o100444


@dataclass(frozen=True)
class _Node:
    entry: Entry
    data: object  # pycdlib's inode, to tell whether two views share a file's data


class IsoReader(ClosingReader):
    """A bundle as an ISO image, read in place: nothing is extracted or written.

    The whole directory tree is read when the reader is made; a damaged image, an image
    with neither UDF nor Rock Ridge, or one whose UDF and Rock Ridge views differ is
    refused with MediaError. Streams from :meth:`open` share the image's file; reads are
    serialised with a lock so several streams, even from threads, do not interfere.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fp = path.open("rb")
        except OSError as exc:
            raise MediaError(f"cannot read ISO image {path}: {exc.strerror}") from exc
        self._iso = pycdlib.PyCdlib()
        self._lock = threading.Lock()
        try:
            self._iso.open_fp(self._fp)
            self._view = self._choose_view()
            nodes = self._walk(self._view)
            if self._view == "udf_path" and self._iso.has_rock_ridge():
                self._compare(nodes, self._walk("rr_path"))
        except MediaError:
            self._fp.close()
            raise
        except Exception as exc:  # pycdlib raises more than its own errors on damaged images
            self._fp.close()
            raise MediaError(f"{path} is not a readable ISO 9660 image: {exc}") from exc
        self._entries = {path: node.entry for path, node in nodes.items()}
        self._order = sorted(self._entries, key=lambda p: p.split("/"))

    @property
    def description(self) -> str:
        """The image file."""
        return str(self.path)

    def entries(self) -> Iterator[Entry]:
        """Every directory, file and link in the image, parents before children."""
        for path in self._order:
            yield self._entries[path]

    def open(self, path: str) -> BinaryIO:
        """Stream the regular file at ``path`` out of the image; MediaError otherwise."""
        entry = self._entries.get(path)
        if entry is None:
            raise MediaError(f"cannot read {path} on {self.path}: no such file in the image")
        if entry.kind != "file":
            raise MediaError(f"{path} on {self.path} is not a regular file")
        if entry.size == 0:
            return io.BytesIO(b"")
        with self._lock:
            try:
                raw: Any = self._iso.open_file_from_iso(**{self._view: "/" + path})
                raw.__enter__()
            except Exception as exc:  # as in __init__: a damaged image raises anything
                raise MediaError(f"cannot read {path} on {self.path}: {exc}") from exc
        return cast(BinaryIO, _IsoFile(raw, self._lock, f"{path} on {self.path}"))

    def close(self) -> None:
        """Close the image file; streams opened from it stop working."""
        self._fp.close()

    def _choose_view(self) -> str:
        if self._iso.has_udf():
            return "udf_path"
        if self._iso.has_rock_ridge():
            return "rr_path"
        raise MediaError(
            f"{self.path} has neither UDF nor Rock Ridge, so its file names are not exact: "
            "expected an image written by `appliance media write --format iso`"
        )

    def _walk(self, view: str) -> dict[str, _Node]:
        nodes: dict[str, _Node] = {}
        for dirpath, dirnames, filenames in self._iso.walk(**{view: "/"}):
            base = dirpath.strip("/")
            names = dirnames + filenames
            for name in names:
                if name in ("", ".", "..") or "/" in name or "\x00" in name:
                    raise MediaError(
                        f"{self.path}: directory /{base} holds an entry named {name!r}, "
                        "which is not a file name"
                    )
            if len(set(names)) != len(names):
                twice = sorted({n for n in names if names.count(n) > 1})
                raise MediaError(
                    f"{self.path}: directory /{base} holds two entries named {twice[0]!r}"
                )
            for name in names:
                rel = f"{base}/{name}" if base else name
                record = self._iso.get_record(**{view: "/" + rel})
                nodes[rel] = _Node(_entry(rel, record, view), getattr(record, "inode", None))
        return nodes

    def _compare(self, udf: dict[str, _Node], rock_ridge: dict[str, _Node]) -> None:
        """Refuse an image whose UDF and Rock Ridge views show different trees or data."""
        for path in sorted(udf.keys() | rock_ridge.keys()):
            one, other = udf.get(path), rock_ridge.get(path)
            if one is None or other is None:
                where = "Rock Ridge" if one is None else "UDF"
                raise MediaError(
                    f"{self.path}: {path} is only in the {where} view; expected the UDF and "
                    "Rock Ridge views to hold the same tree"
                )
            if one.entry != other.entry:
                raise MediaError(
                    f"{self.path}: {path} is a {one.entry.kind} of {one.entry.size} bytes in "
                    f"the UDF view but a {other.entry.kind} of {other.entry.size} bytes in "
                    "the Rock Ridge view"
                )
            if one.entry.kind == "file" and one.entry.size and one.data is not other.data:
                raise MediaError(
                    f"{self.path}: {path} has different data in the UDF and Rock Ridge views"
                )


def _entry(rel: str, record: Any, view: str) -> Entry:
    kind: Kind
    if view == "udf_path":
        if record.is_symlink():
            kind = "symlink"
        elif record.is_dir():
            kind = "dir"
        elif record.is_file():
            kind = "file"
        else:
            kind = "other"
    elif record.rock_ridge is not None and record.rock_ridge.is_symlink():
        kind = "symlink"
    elif record.is_dir():
        kind = "dir"
    else:
        kind = "file" if stat.S_ISREG(_rock_ridge_mode(record)) else "other"
    size = int(record.get_data_length()) if kind == "file" else 0
    return Entry(rel, kind, size)


def _rock_ridge_mode(record: Any) -> int:
    """The Rock Ridge file mode, or a regular file's when the record carries none."""
    try:
        return int(record.rock_ridge.get_file_mode())
    except (AttributeError, PyCdlibException):
        return _FILE_MODE


class _IsoFile(io.RawIOBase):
    """One file streamed out of the image; every read holds the image's lock."""

    def __init__(self, raw: Any, lock: threading.Lock, name: str) -> None:
        super().__init__()
        self._raw = raw
        self._lock = lock
        self._name = name

    def readable(self) -> bool:
        """Always readable."""
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left when ``size`` is negative or None)."""
        if self.closed:
            raise ValueError(f"read from closed file {self._name}")
        with self._lock:
            try:
                return bytes(self._raw.read(size))
            except (PyCdlibException, OSError) as exc:
                raise MediaError(f"cannot read {self._name}: {exc}") from exc

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer``; see :meth:`read`."""
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Stop streaming; the image itself stays open."""
        if not self.closed:
            self._raw.close()
        super().close()
