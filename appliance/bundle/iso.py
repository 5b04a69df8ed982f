"""Writing a bundle as an ISO 9660 image (the vendor's side; the site reads it with
:class:`appliance.media.iso.IsoReader`).

The image holds one tree in three views that share every file's data:

* UDF 2.60, which keeps exact names up to 253 characters and files of any size;
* ISO 9660 level 4 (ISO 9660:1999) with Rock Ridge 1.09, which also keep exact names (no
  8.3 mangling, lowercase allowed, no ``;1`` version) and any depth;
* Joliet, for each path whose names all fit Joliet's rules (at most 64 characters, none
  of ``* / : ; ? \\``): every name of the bundle layout does, so Windows sees the tree.

The site's reader refuses an image whose UDF and Rock Ridge views disagree.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from appliance._fsutil import fsync_dir
from appliance.bundle.tree import refuse_out_inside, scan_tree
from appliance.errors import MediaError

__all__ = ["iso_volume_id", "write_iso", "write_iso_files"]

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
    files, dirs = scan_tree(bundle_dir)
    refuse_out_inside(out, bundle_dir)
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
