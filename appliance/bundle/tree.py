"""A bundle directory as the media writers take it: regular files and directories only.

Shared by the ISO writer (:mod:`appliance.bundle.iso`) and the copy and volume writers
(:mod:`appliance.bundle.volumes`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from appliance.errors import MediaError

__all__ = ["refuse_out_inside", "scan_tree"]


def scan_tree(root: Path) -> tuple[dict[str, Path], list[str]]:
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


def refuse_out_inside(out: Path, root: Path) -> None:
    """MediaError when ``out`` lies inside the bundle ``root`` (it would write into itself)."""
    if out.resolve().is_relative_to(root.resolve()):
        raise MediaError(f"{out} is inside the bundle {root}: write the image elsewhere")
