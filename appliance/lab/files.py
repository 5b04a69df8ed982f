"""Copying and removing whole directory trees that may hold mount points.

debootstrap mounts /proc, /sys and sometimes binds host device nodes inside the tree it
builds; a build killed midway leaves those mounts behind. Deleting such a tree without
unmounting first would delete through the mounts into the host's own /dev. Every tree
the lab removes goes through ``remove_tree``, which takes "already unmounted" and "already
deleted" as done.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from appliance._process import run
from appliance.errors import LabError
from appliance.lab.host import Runner, host_runner, remove

__all__ = ["copy_tree", "locked", "mounts_under", "remove_tree"]


def mounts_under(path: Path, *, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """Mount points at or below ``path``, deepest first."""
    root = os.path.realpath(path)
    found = []
    for line in mountinfo.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        # Field 5 is the mount point, with spaces and the like written as octal escapes.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == root or point.startswith(root.rstrip("/") + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(
    path: Path,
    *,
    run: Runner = host_runner,
    mountinfo: Path = Path("/proc/self/mountinfo"),
) -> None:
    """Unmount whatever is mounted below ``path``, then delete it; absent is fine.

    A mount that is gone by the time its turn comes, and files deleted meanwhile, count
    as done; LabError names a mount still there after unmounting it failed.
    """
    if not path.exists() and not path.is_symlink():
        return
    for point in mounts_under(path, mountinfo=mountinfo):
        # Lazy: a mount still busy is detached now, so deleting cannot reach through it.
        remove(
            run,
            ["umount", "--lazy", point],
            f"the mount at {point}",
            partial(_mounted, point, path, mountinfo),
        )
    left = mounts_under(path, mountinfo=mountinfo)
    if left:
        raise LabError(
            f"{path} still has mounts after unmounting them: {', '.join(map(str, left))}",
            hint="unmount them by hand (`umount -R`), then run the command again",
        )
    if path.is_dir() and not path.is_symlink():
        # rm is several times faster than shutil.rmtree on a root filesystem's many small
        # files; --one-file-system is a second guard against crossing into a mount. -f
        # takes files that vanish meanwhile as deleted.
        remove(
            run,
            ["rm", "-rf", "--one-file-system", "--", path],
            str(path),
            lambda: path.exists() or path.is_symlink(),
        )
    else:
        path.unlink(missing_ok=True)


def _mounted(point: Path, below: Path, mountinfo: Path) -> bool:
    return point in mounts_under(below, mountinfo=mountinfo)


def copy_tree(source: Path, destination: Path) -> None:
    """Copy a root filesystem with owners, modes, links and xattrs (reflinked where possible)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--reflink=auto", "--", source, destination])


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if absent) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
