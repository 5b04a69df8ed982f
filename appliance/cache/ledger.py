"""Which cache entries current work uses: the ledger `appliance cache prune` keeps by.

Cache entries are keyed on their inputs, so a changed input leaves the old entry behind
(another wheelhouse, another base root filesystem...). A piece of work that uses the
cache (a component build for an output folder, a lab's root filesystem) runs inside
:func:`using`, and the functions that hand out cache entries call :func:`note` or
:func:`note_image`. When the work ends, what it used is written to
``$APPLIANCE_CACHE/uses/<digest>.json`` for its owner (the output folder or the lab) and
its part (a component's name), replacing that owner and part's earlier record. A record
counts while its owner still exists; prune keeps what any counting record names.

While work runs it holds a shared lock on ``$APPLIANCE_CACHE/uses/.lock``; prune takes it
exclusively, so it never removes what a build is putting in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance._fsutil import atomic_write_json
from appliance.errors import ApplianceError
from appliance.settings import cache_dir

__all__ = [
    "CacheLedgerError",
    "Use",
    "UseRecord",
    "forget_stale",
    "note",
    "note_image",
    "read_records",
    "use_lock",
    "using",
]

FORMAT = "appliance-cache-use/1"


@dataclass
class Use:
    """What one piece of work used: cache entries (paths under the cache) and images."""

    owner: str
    part: str
    entries: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class UseRecord:
    """A written record; it counts while ``owner`` exists."""

    owner: Path
    part: str
    entries: frozenset[str]
    images: frozenset[str]

    @property
    def current(self) -> bool:
        return self.owner.exists()


_active: list[Use] = []


def note(path: Path) -> None:
    """The work running now uses the cache entry ``path`` (a file or folder in the cache)."""
    try:
        relative = path.resolve().relative_to(cache_dir().resolve()).as_posix()
    except ValueError:
        return  # not in the cache: nothing for prune to keep
    for use in _active:
        use.entries.add(relative)


def note_image(tag: str) -> None:
    """The work running now uses the local image ``tag``."""
    for use in _active:
        use.images.add(tag)


@contextlib.contextmanager
def use_lock(*, exclusive: bool) -> Iterator[None]:
    """Hold the cache's use lock: shared for work, exclusive (without waiting) for prune.

    BlockingIOError when prune cannot have it now."""
    folder = cache_dir() / "uses"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX | fcntl.LOCK_NB) if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def using(owner: Path, part: str) -> Iterator[Use]:
    """Run work for ``owner`` (``part`` of it) and record what it used, even if it fails
    (a rerun wants the same entries). Work that used nothing of the cache leaves the
    record as it was: a record only ever names more than is used, never less."""
    use = Use(str(owner.resolve()), part)
    with use_lock(exclusive=False):
        _active.append(use)
        try:
            yield use
        finally:
            _active.remove(use)
            if use.entries or use.images:
                _write(use)


def _record_file(owner: str, part: str) -> Path:
    name = hashlib.sha256(f"{owner}\0{part}".encode()).hexdigest()[:20]
    return cache_dir() / "uses" / f"{name}.json"


def _write(use: Use) -> None:
    atomic_write_json(
        _record_file(use.owner, use.part),
        {
            "format": FORMAT,
            "owner": use.owner,
            "part": use.part,
            "entries": sorted(use.entries),
            "images": sorted(use.images),
        },
    )


class CacheLedgerError(ApplianceError):
    """A use record cannot be read: prune would not know what it protects."""


def forget_stale() -> int:
    """Remove the records whose owner is gone (prune does, under its exclusive lock)."""
    gone = 0
    for record in read_records():
        if not record.current:
            _record_file(str(record.owner), record.part).unlink(missing_ok=True)
            gone += 1
    return gone


def read_records() -> list[UseRecord]:
    """Every record written. One that cannot be read raises CacheLedgerError: skipping it
    would let prune remove what it protects."""
    records = []
    for path in sorted((cache_dir() / "uses").glob("*.json")):
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
            if raw.get("format") != FORMAT:
                raise ValueError(f"format {raw.get('format')!r}, not {FORMAT}")
            records.append(
                UseRecord(
                    Path(raw["owner"]),
                    str(raw["part"]),
                    frozenset(raw["entries"]),
                    frozenset(raw["images"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CacheLedgerError(
                f"the cache's use record {path} cannot be read: {exc}",
                hint="remove that file and build again (the build writes it anew), then prune",
            ) from exc
    return records
