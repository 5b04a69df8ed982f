"""One volume of a split bundle, or a whole set of them, read in place as one bundle.

A bundle too large for one disc or stick is split into volumes ``vol01``, ``vol02``, …
(directories or ISO images; written by :mod:`appliance.bundle.volumes`). Every volume
carries all of ``metadata/`` (byte-identical copies), some of the ``targets/sha256/*``
files, and a ``VOLUME.json``::

    {"volume": 2, "volumes": 3, "targets": ["<hex>", …], "bundle_metadata_sha256": "<hex>"}

``VOLUME.json`` is not signed and decides nothing: :class:`VolumeSetReader` uses it only to
tell a missing, repeated or foreign volume with a clear message, then hands the verifier
the merged tree (metadata once, every target, no ``VOLUME.json``) to decide trust on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

from appliance.errors import MediaError
from appliance.media.iso import IsoReader
from appliance.media.layout import LIMITS, METADATA_DIR, TARGETS_DIR, VOLUME_FILE
from appliance.media.reader import ClosingReader, DirectoryReader, Entry

__all__ = ["VolumeReader", "VolumeRecord", "VolumeSetReader"]

_BLOBS = f"{TARGETS_DIR}/sha256"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class VolumeRecord:
    """What a volume's VOLUME.json says; the one place that defines that file's form."""

    volume: int
    volumes: int
    targets: tuple[str, ...]
    bundle_metadata_sha256: str

    def to_bytes(self) -> bytes:
        """The record as the volume writer stores it: sorted keys, indented, one newline."""
        record = {
            "volume": self.volume,
            "volumes": self.volumes,
            "targets": list(self.targets),
            "bundle_metadata_sha256": self.bundle_metadata_sha256,
        }
        return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")


class VolumeReader(ClosingReader):
    """One volume of a split bundle, a directory or an ISO image, read in place.

    Its ``VOLUME.json`` is parsed and checked for form when the reader is made, exposed
    as :attr:`volume`, :attr:`volumes` and :attr:`targets`, and hidden from
    :meth:`entries` and :meth:`open`: it is not part of the bundle.
    """

    def __init__(self, path: Path) -> None:
        if path.is_dir():
            self._media: DirectoryReader | IsoReader = DirectoryReader(path)
        elif path.is_file():
            self._media = IsoReader(path)
        else:
            raise MediaError(f"{path} does not exist: expected a volume directory or ISO image")
        self.path = path
        try:
            self._info = _parse_volume_json(self._read_record(), self.description)
        except MediaError:
            self.close()
            raise

    @property
    def description(self) -> str:
        """The volume's directory or image."""
        return self._media.description

    @property
    def volume(self) -> int:
        """This volume's number, from 1."""
        return self._info.volume

    @property
    def volumes(self) -> int:
        """How many volumes the set has."""
        return self._info.volumes

    @property
    def targets(self) -> tuple[str, ...]:
        """The sha256 hex digests of the targets this volume says it holds."""
        return self._info.targets

    @property
    def bundle_metadata_sha256(self) -> str:
        """sha256 of the bundle's metadata/targets.json, the same on every volume of a set."""
        return self._info.bundle_metadata_sha256

    def entries(self) -> Iterator[Entry]:
        """Everything on the volume except VOLUME.json."""
        return (entry for entry in self._media.entries() if entry.path != VOLUME_FILE)

    def open(self, path: str) -> BinaryIO:
        """Open a file of the bundle on this volume; VOLUME.json is not one."""
        if path == VOLUME_FILE:
            raise MediaError(f"{VOLUME_FILE} on {self.description} is not part of the bundle")
        return self._media.open(path)

    def close(self) -> None:
        """Close the image of an ISO volume; nothing to do for a directory."""
        if isinstance(self._media, IsoReader):
            self._media.close()

    def _read_record(self) -> bytes:
        limit = LIMITS.max_metadata_bytes
        try:
            handle = self._media.open(VOLUME_FILE)
        except MediaError as exc:
            raise MediaError(
                f"{self.description} is not a bundle volume: expected a readable "
                f"{VOLUME_FILE} ({exc})"
            ) from exc
        with handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise MediaError(f"{VOLUME_FILE} on {self.description} is larger than {limit} bytes")
        return data


def _parse_volume_json(data: bytes, where: str) -> VolumeRecord:
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise MediaError(f"{VOLUME_FILE} on {where} is not valid JSON: {exc}") from exc

    def fail(expected: str, found: Any) -> MediaError:
        return MediaError(f"{VOLUME_FILE} on {where}: expected {expected}, found {found!r}")

    if not isinstance(record, dict):
        raise fail("an object", type(record).__name__)
    volume, volumes = record.get("volume"), record.get("volumes")
    if not _is_count(volume):
        raise fail('"volume" to be a whole number from 1', volume)
    if not _is_count(volumes):
        raise fail('"volumes" to be a whole number from 1', volumes)
    if volume > volumes:
        raise fail(f'"volume" at most "volumes" ({volumes})', volume)
    targets = record.get("targets")
    if not isinstance(targets, list) or not all(
        isinstance(t, str) and _HEX64.match(t) for t in targets
    ):
        raise fail('"targets" to be a list of sha256 hex digests', targets)
    if len(set(targets)) != len(targets):
        raise fail('"targets" to name each target once', "a repeated target")
    digest = record.get("bundle_metadata_sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise fail('"bundle_metadata_sha256" to be a sha256 hex digest', digest)
    return VolumeRecord(volume, volumes, tuple(targets), digest)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class VolumeSetReader(ClosingReader):
    """Several volumes of one bundle, given in any order, read as one bundle tree.

    Made only from a consistent set: every volume says the same number of volumes and
    the same metadata digest, the numbers cover 1..n exactly once, every volume carries
    byte-identical ``metadata/``, each volume holds exactly the targets its VOLUME.json
    lists, and no file is on two volumes. MediaError names the volume and file otherwise.
    """

    def __init__(self, paths: list[Path]) -> None:
        if not paths:
            raise MediaError("expected the volumes of a bundle, found none")
        opened: list[VolumeReader] = []
        try:
            for path in paths:
                opened.append(VolumeReader(path))
            self._volumes = _check_numbers(opened)
            _check_metadata(self._volumes)
            self._entries, self._owner = _merge(self._volumes)
        except BaseException:
            for volume in opened:
                volume.close()
            raise

    @property
    def description(self) -> str:
        """The volumes, in order."""
        names = ", ".join(volume.description for volume in self._volumes)
        return f"volume set of {len(self._volumes)} ({names})"

    def entries(self) -> Iterator[Entry]:
        """The bundle as one tree: metadata once, every target, no VOLUME.json."""
        return iter(self._entries)

    def open(self, path: str) -> BinaryIO:
        """Open ``path`` on whichever volume holds it."""
        owner = self._owner.get(path)
        if owner is None:
            raise MediaError(f"cannot read {path} on {self.description}: not on any volume")
        return owner.open(path)

    def close(self) -> None:
        """Close the images of ISO volumes."""
        for volume in self._volumes:
            volume.close()


def _check_numbers(volumes: list[VolumeReader]) -> list[VolumeReader]:
    """The volumes ordered 1..n; MediaError for disagreement, a gap or a repeat."""
    first = volumes[0]
    for volume in volumes[1:]:
        if volume.volumes != first.volumes:
            raise MediaError(
                f"the volumes disagree on the size of the set: {first.description} says "
                f"{first.volumes} volumes, {volume.description} says {volume.volumes}"
            )
        if volume.bundle_metadata_sha256 != first.bundle_metadata_sha256:
            raise MediaError(
                f"the volumes come from different bundles: {first.description} has metadata "
                f"sha256 {first.bundle_metadata_sha256}, {volume.description} has "
                f"{volume.bundle_metadata_sha256}"
            )
    by_number: dict[int, list[VolumeReader]] = {}
    for volume in volumes:
        by_number.setdefault(volume.volume, []).append(volume)
    problems = [
        f"volume {number} was given {len(group)} times ("
        + ", ".join(v.description for v in group)
        + ")"
        for number, group in sorted(by_number.items())
        if len(group) > 1
    ]
    missing = [n for n in range(1, first.volumes + 1) if n not in by_number]
    if missing:
        given = ", ".join(f"{v.volume} ({v.description})" for v in volumes)
        problems.append(
            f"volume{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of "
            f"{first.volumes} {'are' if len(missing) > 1 else 'is'} missing (given: {given})"
        )
    if problems:
        raise MediaError("; ".join(problems))
    return [by_number[n][0] for n in range(1, first.volumes + 1)]


def _metadata_entries(volume: VolumeReader) -> dict[str, Entry]:
    return {
        entry.path: entry
        for entry in volume.entries()
        if entry.path == METADATA_DIR or entry.path.startswith(f"{METADATA_DIR}/")
    }


def _check_metadata(volumes: list[VolumeReader]) -> None:
    """Every volume's metadata/ is byte-identical to volume 1's."""
    first = volumes[0]
    reference = _metadata_entries(first)
    digests = {
        path: _sha256_stream(first, path) for path, e in reference.items() if e.kind == "file"
    }
    targets_json = f"{METADATA_DIR}/targets.json"
    if targets_json in digests and digests[targets_json] != first.bundle_metadata_sha256:
        raise MediaError(
            f"{VOLUME_FILE} on {first.description} names metadata sha256 "
            f"{first.bundle_metadata_sha256}, but its {targets_json} has {digests[targets_json]}"
        )
    for volume in volumes[1:]:
        mine = _metadata_entries(volume)
        for path in sorted(reference.keys() | mine.keys()):
            ours, theirs = reference.get(path), mine.get(path)
            if theirs is None or ours is None:
                on, off = (first, volume) if theirs is None else (volume, first)
                raise MediaError(
                    f"{path} is on volume {on.volume} ({on.description}) but not on volume "
                    f"{off.volume} ({off.description}): every volume carries the same metadata"
                )
            if ours != theirs or (
                ours.kind == "file" and _sha256_stream(volume, path) != digests[path]
            ):
                raise MediaError(
                    f"{path} on volume {volume.volume} ({volume.description}) differs from "
                    f"volume {first.volume} ({first.description}): every volume carries "
                    "byte-identical metadata"
                )


def _merge(volumes: list[VolumeReader]) -> tuple[list[Entry], dict[str, VolumeReader]]:
    """The merged tree and, for each file, the volume that holds it."""
    merged: dict[str, Entry] = {}
    owner: dict[str, VolumeReader] = {}
    held: dict[int, set[str]] = {}
    for volume in volumes:
        mine = held.setdefault(volume.volume, set())
        for entry in volume.entries():
            is_metadata = entry.path.split("/", 1)[0] == METADATA_DIR
            if is_metadata and volume is not volumes[0]:
                continue  # checked identical to volume 1's
            if entry.path.startswith(f"{_BLOBS}/"):
                mine.add(entry.path.removeprefix(f"{_BLOBS}/"))
            seen = merged.get(entry.path)
            if seen is not None and (entry.kind != "dir" or seen.kind != "dir"):
                first = owner.get(entry.path)
                where = first.description if first else "another volume"
                raise MediaError(
                    f"{entry.path} is on two volumes: {where} and {volume.description}"
                )
            merged[entry.path] = entry
            if entry.kind != "dir":
                owner[entry.path] = volume
    for volume in volumes:
        listed, mine = set(volume.targets), held[volume.volume]
        if lacking := sorted(listed - mine):
            raise MediaError(
                f"volume {volume.volume} ({volume.description}) lacks {_BLOBS}/{lacking[0]}, "
                f"which its {VOLUME_FILE} lists: the volume is incomplete"
            )
        if unlisted := sorted(mine - listed):
            raise MediaError(
                f"volume {volume.volume} ({volume.description}) holds {_BLOBS}/{unlisted[0]}, "
                f"which its {VOLUME_FILE} does not list"
            )
    entries = sorted(merged.values(), key=lambda entry: entry.path.split("/"))
    return entries, owner


def _sha256_stream(reader: VolumeReader, path: str) -> str:
    digest = hashlib.sha256()
    with reader.open(path) as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
