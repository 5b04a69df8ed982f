"""A bundle as an ISO 9660 image: writing one from a tree, and reading one without extracting.

The image holds one tree in three views that share every file's data:

* UDF 2.60, which keeps exact names up to 253 characters and files of any size;
* ISO 9660 level 4 (ISO 9660:1999) with Rock Ridge 1.09, which also keep exact names (no
  8.3 mangling, lowercase allowed, no ``;1`` version) and any depth;
* Joliet, for each path whose names all fit Joliet's rules (at most 64 characters, none
  of ``* / : ; ? \\``): every name of the bundle layout does, so Windows sees the tree.

:class:`IsoReader` reads the UDF view (the Rock Ridge one on an image without UDF) and,
where both exist, refuses an image whose UDF and Rock Ridge views disagree: a reader that
mounted the image could otherwise see other content than the one the verifier checked.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, cast

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from appliance._fsutil import fsync_dir
from appliance.bundle.reader import Entry, Kind
from appliance.errors import MediaError

__all__ = ["IsoReader", "iso_volume_id", "write_iso", "write_iso_files"]

_FILE_MODE = 0o100444
_DIR_MODE = 0o040555
_COPY_BLOCK = 1 << 20
# ISO 9660 allows 32 characters, but pycdlib writes the same identifier into the Joliet
# descriptor too, as UCS-2 in the same 32 bytes: 16 characters is what fits both.
_VOLUME_ID_MAX = 16
_JOLIET_MAX_NAME = 64  # characters of one name (Joliet specification)
_JOLIET_MAX_DEPTH = 7  # directory levels below the root, as in ISO 9660
_JOLIET_MAX_PATH = 120  # characters of a whole path (240 bytes of UCS-2)
_JOLIET_FORBIDDEN = frozenset("*/:;?\\")
_NOT_ID = re.compile(r"[^A-Z0-9_]")


def iso_volume_id(text: str) -> str:
    """``text`` as a volume identifier: A-Z, 0-9 and _ only, at most 16 characters."""
    cleaned = _NOT_ID.sub("_", text.upper())[:_VOLUME_ID_MAX]
    return cleaned or "BUNDLE"


def write_iso(bundle_dir: Path, out: Path, *, volume_id: str) -> None:
    """Write the tree under ``bundle_dir`` as an ISO image at ``out``, atomically.

    Only directories and regular files may be in the tree: a symbolic link or any other
    node is refused with MediaError and nothing is written. File contents are streamed
    from disk while the image is written.
    """
    files, dirs = _scan_tree(bundle_dir)
    _refuse_out_inside(out, bundle_dir)
    write_iso_files(files, out, volume_id=volume_id, dirs=dirs)


def write_iso_files(
    files: Mapping[str, Path | bytes],
    out: Path,
    *,
    volume_id: str,
    dirs: Iterable[str] = (),
) -> None:
    """Write an image holding exactly ``files`` (relative POSIX path → file on disk or bytes).

    Parent directories are implied; ``dirs`` adds directories that hold no file. The image
    is written to a temporary file beside ``out``, synced, then renamed over ``out``: a
    failure at any point leaves ``out`` as it was and no temporary file behind.
    """
    all_dirs = set(dirs)
    for rel in files:
        parts = rel.split("/")
        all_dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    iso = pycdlib.PyCdlib()
    iso.new(
        interchange_level=4,
        rock_ridge="1.09",
        joliet=3,
        udf="2.60",
        vol_ident=iso_volume_id(volume_id),
        app_ident_str="appliance",
    )
    sources: list[_SourceFile] = []
    try:
        for rel in sorted(all_dirs, key=lambda p: p.split("/")):
            _add(iso, rel, None, 0)
        for rel, source in sorted(files.items()):
            if isinstance(source, bytes):
                _add(iso, rel, io.BytesIO(source), len(source))
            else:
                src = _SourceFile(source)
                sources.append(src)
                _add(iso, rel, cast(BinaryIO, src), src.size)
        _write_atomically(iso, out)
    finally:
        for src in sources:
            src.close()
        iso.close()


def _add(iso: pycdlib.PyCdlib, rel: str, fp: BinaryIO | None, length: int) -> None:
    """Add a directory (``fp`` None) or a file in every view whose rules its name fits."""
    absolute = "/" + rel
    joliet = absolute if _joliet_fits(rel) else None
    name = rel.rsplit("/", 1)[-1]
    try:
        if fp is None:
            iso.add_directory(
                iso_path=absolute,
                rr_name=name,
                joliet_path=joliet,
                udf_path=absolute,
                file_mode=_DIR_MODE,
            )
        else:
            iso.add_fp(
                fp,
                length,
                iso_path=absolute,
                rr_name=name,
                joliet_path=joliet,
                udf_path=absolute,
                file_mode=_FILE_MODE,
            )
    except PyCdlibException as exc:
        raise MediaError(f"cannot put {rel} on an ISO image: {exc}") from exc


def _joliet_fits(rel: str) -> bool:
    parts = rel.split("/")
    if len(parts) > _JOLIET_MAX_DEPTH + 1 or len(rel) > _JOLIET_MAX_PATH:
        return False
    return all(
        len(part.encode("utf-16-be")) // 2 <= _JOLIET_MAX_NAME
        and not _JOLIET_FORBIDDEN.intersection(part)
        for part in parts
    )


def _write_atomically(iso: pycdlib.PyCdlib, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            iso.write_fp(handle, blocksize=_COPY_BLOCK)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except PyCdlibException as exc:
        _unlink(tmp)
        raise MediaError(f"cannot write ISO image {out}: {exc}") from exc
    except OSError as exc:
        _unlink(tmp)
        raise MediaError(f"cannot write ISO image {out}: {exc.strerror or exc}") from exc
    except BaseException:
        _unlink(tmp)
        raise
    fsync_dir(out.parent)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _scan_tree(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Regular files and directories under ``root``; MediaError for anything else."""
    if not root.is_dir():
        raise MediaError(f"{root} is not a directory: expected a bundle directory")
    files: dict[str, Path] = {}
    dirs: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            full = base / name
            rel = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISDIR(mode):
                dirs.append(rel)
            elif stat.S_ISREG(mode):
                files[rel] = full
            else:
                what = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise MediaError(
                    f"{rel} in {root} is {what}: a bundle holds only regular files and directories"
                )
    return files, dirs


def _refuse_out_inside(out: Path, root: Path) -> None:
    if out.resolve().is_relative_to(root.resolve()):
        raise MediaError(f"{out} is inside the bundle {root}: write the image elsewhere")


class _SourceFile(io.RawIOBase):
    """A file on disk that pycdlib reads while it writes the image.

    pycdlib keeps every added file object until it writes; holding one open descriptor
    per file would run out of descriptors on a bundle with thousands of targets. This
    object opens its file only when read and closes it after the last byte, and it
    refuses a file that was replaced, grew or shrank since it was added (pycdlib would
    otherwise pad a short file silently).
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            info = path.lstat()
        except OSError as exc:
            raise MediaError(f"cannot read {path}: {exc.strerror}") from exc
        if not stat.S_ISREG(info.st_mode):
            raise MediaError(f"{path} is not a regular file")
        self.path = path
        self.size = info.st_size
        self._identity = (info.st_dev, info.st_ino)
        self._fd: int | None = None
        self._pos = 0

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable."""
        return True

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position; the file is read with pread, so nothing moves on disk."""
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position in {self.path}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes; MediaError when the file ends before its recorded size."""
        left = self.size - self._pos
        want = left if size is None or size < 0 else min(size, left)
        if want <= 0:
            self._release()
            return b""
        data = os.pread(self._acquire(), want, self._pos)
        if len(data) != want:
            raise MediaError(
                f"{self.path} shrank while the image was written: expected {self.size} "
                f"bytes, found {self._pos + len(data)}"
            )
        self._pos += want
        if self._pos >= self.size:
            self._release()
        return data

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer``; see :meth:`read`."""
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Release the descriptor if one is open."""
        self._release()
        super().close()

    def _acquire(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise MediaError(f"cannot read {self.path}: {exc.strerror}") from exc
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != self._identity or info.st_size != self.size:
            os.close(fd)
            raise MediaError(
                f"{self.path} changed while the image was written: expected the same "
                f"{self.size}-byte file, found a {info.st_size}-byte one"
            )
        self._fd = fd
        return fd

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class _Node:
    entry: Entry
    data: object  # pycdlib's inode, to tell whether two views share a file's data


class IsoReader:
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

    def __enter__(self) -> IsoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
