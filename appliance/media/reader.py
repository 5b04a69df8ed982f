"""What the verifier reads media through (:class:`MediaReader`), and a plain directory.

The verifier decides trust on what a reader hands it and never touches the file system
itself. Readers only read: they open files read-only, follow no symbolic link, and write
nothing anywhere. An ISO image and split volumes have readers of their own
(:mod:`appliance.media.iso`, :mod:`appliance.media.volumes`); :mod:`appliance.media.opener`
picks the one for what a person named.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Protocol, Self

from appliance.errors import MediaError

__all__ = ["ClosingReader", "DirectoryReader", "Entry", "Kind", "MediaReader"]

Kind = Literal["file", "dir", "symlink", "other"]


@dataclass(frozen=True)
class Entry:
    """One thing found on the media."""

    path: str  # relative POSIX path
    kind: Kind
    size: int


class MediaReader(Protocol):
    """What the verifier needs from media."""

    @property
    def description(self) -> str:
        """A short name for messages: the directory, the ISO file, the volume set."""
        ...

    def entries(self) -> Iterator[Entry]:
        """Every file, directory, link or other node on the media, recursively."""
        ...

    def open(self, path: str) -> BinaryIO:
        """Open the regular file at ``path`` for reading; MediaError if it is not one."""
        ...


class ClosingReader:
    """A reader that holds an open image: used in ``with``, closed on leaving the block."""

    def close(self) -> None:
        """Let go of what the reader holds open."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DirectoryReader:
    """A bundle as a plain directory tree (a USB stick, a mounted DVD)."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise MediaError(f"{root} is not a directory")
        self.root = root

    @property
    def description(self) -> str:
        """The directory."""
        return str(self.root)

    def entries(self) -> Iterator[Entry]:
        """Walk without following links; report links and odd nodes as they are."""
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            base = Path(dirpath)
            for name in sorted(dirnames + filenames):
                full = base / name
                rel = full.relative_to(self.root).as_posix()
                info = full.lstat()
                if stat.S_ISLNK(info.st_mode):
                    yield Entry(rel, "symlink", 0)
                elif stat.S_ISDIR(info.st_mode):
                    yield Entry(rel, "dir", 0)
                elif stat.S_ISREG(info.st_mode):
                    yield Entry(rel, "file", info.st_size)
                else:
                    yield Entry(rel, "other", 0)
            dirnames.sort()

    def open(self, path: str) -> BinaryIO:
        """Open read-only; O_NOFOLLOW refuses a link swapped in after the walk."""
        full = self.root / path
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise MediaError(f"cannot read {path} on {self.root}: {exc.strerror}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise MediaError(f"{path} on {self.root} is not a regular file")
        return os.fdopen(fd, "rb", buffering=0)
