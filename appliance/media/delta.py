"""Delta media: the content a release leaves to the site's store, and finding it there.

A delta release (ADR 0020) is signed whole: its targets.json names every target, and the
ones a base release holds carry ``custom.base_release`` (``layout.BASE_RELEASE``). Only
those may be absent from the media, and only on complete media: the site must then hold
each whole target in its store, where it is checked like media, by size and every byte
of its sha256. A store is trusted no further than that re-hash.

The verifier (:mod:`appliance.media.verify`) calls this after the metadata is trusted;
the store is read through :class:`BlobStore`, which the installer implements on its
folder, so nothing here touches the file system.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from tuf.api.metadata import TargetFile

from appliance.errors import MetadataError, MissingFileError, SizeMismatchError, UnsafePathError
from appliance.media.hashing import hash_all
from appliance.media.layout import BASE_RELEASE, TARGETS_DIR, version_key
from appliance.media.reader import Entry

__all__ = ["AtSite", "BlobStore", "check_store", "left_to_site", "release_of"]


class BlobStore(Protocol):
    """Content a site already holds, by sha256 (the installer's store)."""

    @property
    def description(self) -> str:
        """A short name for messages: the store's folder."""
        ...

    def entry(self, sha256_hex: str) -> Entry | None:
        """What the store holds under this digest (not following links), or None."""
        ...

    def open(self, sha256_hex: str) -> BinaryIO:
        """Open the file held under this digest for reading."""
        ...


@dataclass(frozen=True)
class AtSite:
    """A whole target that the media leaves to the site's store."""

    logical: str
    release: str
    target: TargetFile

    @property
    def sha256(self) -> str:
        """The digest the store must hold it under."""
        return str((self.target.hashes or {})["sha256"])


def release_of(logical: str, target: TargetFile) -> str | None:
    """The base release a target is marked as held in, or None; MetadataError if malformed."""
    release = (target.custom or {}).get(BASE_RELEASE)
    if release is None:
        return None
    try:
        version_key(release if isinstance(release, str) else "")
    except ValueError:
        raise MetadataError(
            f"targets.json: {logical} names a base release {release!r}, not a bundle version"
        ) from None
    return str(release)


def left_to_site(
    absent: dict[str, TargetFile], targets: dict[str, TargetFile]
) -> tuple[dict[str, AtSite], list[str]]:
    """Split the stored files missing from the media into what the site must hold (whole
    targets by digest) and what is simply missing (their media paths, sorted)."""
    at_site: dict[str, AtSite] = {}
    missing: list[str] = []
    for path, target in sorted(absent.items()):
        part_of = (target.custom or {}).get("part_of")
        logical = str(part_of) if part_of else target.path
        whole = targets.get(logical)
        if whole is None:
            raise MetadataError(f"targets.json: {target.path} is a part of {logical}, not named")
        release = release_of(logical, whole) if path.startswith(f"{TARGETS_DIR}/") else None
        if release is None:
            missing.append(path)
            continue
        held = AtSite(logical, release, whole)
        at_site.setdefault(held.sha256, held)
    return at_site, missing


def check_store(
    store: BlobStore,
    at_site: dict[str, AtSite],
    *,
    bundle: str,
    media: str,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Every whole the media leaves to the site must be in ``store`` with its length and
    sha256; raise naming the first that is not (and its release). Return bytes hashed."""
    for held in sorted(at_site.values(), key=lambda h: h.logical):
        where = f"{store.description}/{held.sha256}"
        entry = store.entry(held.sha256)
        if entry is None:
            raise MissingFileError(
                f"{held.logical} (sha256 {held.sha256}, {held.target.length} bytes) of release "
                f"{bundle} {held.release} is not on {media} and not in the site store "
                f"{store.description}: this delta media is for a site that holds "
                f"{bundle} {held.release}",
                hint=f"install {bundle} {held.release} first, or ask the vendor for full media "
                "or for a delta built against what this site holds (`appliance site state "
                "--out FILE` writes that for the vendor); nothing was changed on any host",
            )
        if entry.kind != "file":
            what = "a symbolic link" if entry.kind == "symlink" else "not a regular file"
            raise UnsafePathError(f"{where} ({held.logical}) in the site store is {what}")
        if entry.size != held.target.length:
            kind = "larger" if entry.size > held.target.length else "smaller"
            raise SizeMismatchError(
                f"{where} ({held.logical}) in the site store is {entry.size} bytes, {kind} "
                f"than the {held.target.length} bytes targets.json says",
                hint="the site store was altered: remove that file and install from full media",
            )
    return hash_all(
        store.open,
        {held.sha256: held.target for held in at_site.values()},
        workers=workers,
        on_progress=on_progress,
        named=lambda sha: f"{store.description}/{sha}",
    )
