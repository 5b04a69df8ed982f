"""`appliance cache prune`: remove cache entries and images no current work uses.

Kept: whatever a current use record names (see :mod:`appliance.cache.ledger`), the
virtualenv this checkout's setup uses and the one running now, and the lab root
filesystem today's inputs key. Never looked at: labs'
own folders, the demo's folder, supplied programs, Go's module and build caches. Removed:
the other entries of the keyed folders below, leftovers of killed builds, and the
``localhost/appliance/...`` images no record names (an image a container uses stays).

Pruning knows what the builds and the lab key (the lab root filesystem's recipe, podman's
images), so it sits above components and lab; they record their use through the ledger in
:mod:`appliance.cache`, below them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.cache.ledger import forget_stale, read_records, use_lock
from appliance.components import podman
from appliance.components.rootfs import debian_mirror
from appliance.errors import ApplianceError, CommandError
from appliance.lab.rootfs import SUITE, rootfs_key
from appliance.settings import cache_dir

__all__ = [
    "CacheBusyError",
    "Prunable",
    "PrunePlan",
    "apply",
    "human",
    "plan",
    "tree_bytes",
    "venv_key",
]

#: Folders of the cache whose entries are keyed on their inputs (one entry per child).
KEYED = ("venv", "wheelhouse", "rootfs", "models", "go/bin", "lab/rootfs")
IMAGE_PREFIX = "localhost/appliance/"
REPO = Path(__file__).resolve().parents[1]


class CacheBusyError(ApplianceError):
    """Work that uses the cache is running: pruning now could remove what it is making."""


@dataclass(frozen=True)
class Prunable:
    """One thing prune removes: a cache entry (``path``) or an image (``image``)."""

    what: str
    size: int
    path: Path | None = None
    image: str | None = None


@dataclass(frozen=True)
class PrunePlan:
    """What prune would remove, what it keeps, and the cache's size now."""

    remove: tuple[Prunable, ...]
    kept: int
    cache_bytes: int

    @property
    def freed(self) -> int:
        return sum(p.size for p in self.remove if p.path is not None)


def venv_key(pyproject: Path, python_version: str = sys.version) -> str:
    """The virtualenv key scripts/setup.sh computes: pyproject.toml and the Python version."""
    data = pyproject.read_bytes() + python_version.encode() + b"\n"
    return hashlib.sha256(data).hexdigest()[:16]


def tree_bytes(path: Path) -> int:
    """Disk space under ``path`` (allocated blocks; hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    paths: Iterable[Path] = [path] if not path.is_dir() else _walk(path)
    for item in paths:
        try:
            stat = item.lstat()
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) in seen:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        total += stat.st_blocks * 512
    return total


def _walk(root: Path) -> Iterable[Path]:
    yield root
    for folder, dirs, files in os.walk(root, onerror=lambda _: None):
        for name in (*dirs, *files):
            yield Path(folder) / name


def plan(
    *,
    images: Callable[[], list[str]] | None = None,
    image_size: Callable[[str], int] | None = None,
) -> PrunePlan:
    """What prune would remove now (nothing is touched)."""
    cache = cache_dir()
    records = [r for r in read_records() if r.current]
    keep = {entry for r in records for entry in r.entries}
    keep_images = {tag for r in records for tag in r.images}
    keep |= _venvs_in_use(cache) | _current_lab_rootfs()
    remove: list[Prunable] = []
    kept = 0
    for folder in KEYED:
        parent = cache / folder
        if not parent.is_dir():
            continue
        for entry in sorted(parent.iterdir()):
            relative = entry.relative_to(cache).as_posix()
            if folder == "lab/rootfs" and entry.name == ".lock":
                continue
            if relative in keep:
                kept += 1
                continue
            leftover = entry.name.startswith(".") and entry.name.endswith(".tmp")
            what = f"{relative} (left by a killed build)" if leftover else relative
            remove.append(Prunable(what, tree_bytes(entry), path=entry))
    list_images = images or _appliance_images
    sizes = image_size or podman.image_size
    for tag in sorted(set(list_images()) - keep_images):
        remove.append(Prunable(f"image {tag}", sizes(tag), image=tag))
    return PrunePlan(tuple(remove), kept, tree_bytes(cache))


def apply(
    say: Callable[[str], None],
    *,
    dry_run: bool,
    images: Callable[[], list[str]] | None = None,
    image_size: Callable[[str], int] | None = None,
    remove_image: Callable[[str], None] | None = None,
) -> PrunePlan:
    """Plan under the exclusive use lock and, unless ``dry_run``, remove; say each step."""
    try:
        with use_lock(exclusive=True):
            found = plan(images=images, image_size=image_size)
            if not dry_run:
                forgotten = forget_stale()
                if forgotten:
                    say(f"forgot {forgotten} use records of builds and labs that are gone")
            verb = "would remove" if dry_run else "removing"
            for item in found.remove:
                say(f"{verb} {item.what}  {human(item.size)}")
                if dry_run:
                    continue
                if item.path is not None:
                    _remove(item.path)
                elif item.image is not None:
                    try:
                        (remove_image or podman.remove_image)(item.image)
                    except CommandError as exc:  # a container uses it, say
                        said = exc.output.strip().splitlines()
                        say(f"kept {item.what}: {said[-1] if said else exc}")
    except BlockingIOError:
        raise CacheBusyError(
            f"a build, media build or lab start is using {cache_dir()} now",
            hint="run `appliance cache prune` again when it has finished",
        ) from None
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _venvs_in_use(cache: Path) -> set[str]:
    keep = set()
    pyproject = REPO / "pyproject.toml"
    if pyproject.is_file():  # run from a checkout: the virtualenv its setup uses
        keep.add(f"venv/{venv_key(pyproject)}")
    running = Path(sys.prefix).resolve()
    if running.parent == (cache / "venv").resolve():
        keep.add(f"venv/{running.name}")
    return keep


def _current_lab_rootfs() -> set[str]:
    """The lab root filesystem today's inputs key: every lab made from now on uses it, and
    labs made before their use was recorded do too."""
    try:
        return {f"lab/rootfs/{rootfs_key(debian_mirror(SUITE))}"}
    except ApplianceError:  # no Debian mirror configured: no lab can be made here either
        return set()


def _appliance_images() -> list[str]:
    if shutil.which("podman") is None:
        return []
    return [t for t in podman.image_tags() if t.startswith(IMAGE_PREFIX)]


def human(size: int) -> str:
    """Bytes for people: 12.3 MiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
