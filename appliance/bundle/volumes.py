"""Writing a bundle to media (a copy, an ISO image, or volumes) and reading volumes back.

A bundle too large for one disc or stick is split into volumes ``vol01``, ``vol02``, …
Every volume carries all of ``metadata/`` (byte-identical copies), some of the
``targets/sha256/*`` files, and a ``VOLUME.json``::

    {"volume": 2, "volumes": 3, "targets": ["<hex>", …], "bundle_metadata_sha256": "<hex>"}

``VOLUME.json`` is not signed and decides nothing: :class:`VolumeSetReader` uses it only to
tell a missing, repeated or foreign volume with a clear message, then hands the verifier
the merged tree (metadata once, every target, no ``VOLUME.json``) to decide trust on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, TypeGuard

from appliance._fsutil import fsync_dir, staging_dir
from appliance.bundle.iso import (
    IsoReader,
    _refuse_out_inside,
    _scan_tree,
    iso_volume_id,
    write_iso,
    write_iso_files,
)
from appliance.bundle.layout import (
    BOOTSTRAP_FILE,
    LIMITS,
    METADATA_DIR,
    TARGETS_DIR,
    VOLUME_FILE,
    blob_path,
)
from appliance.bundle.reader import DirectoryReader, Entry
from appliance.errors import MediaError

__all__ = [
    "VolumeReader",
    "VolumeSetReader",
    "Written",
    "copy_bundle",
    "parse_size",
    "write_media",
    "write_volumes",
]

_BLOBS = f"{TARGETS_DIR}/sha256"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_UNITS = {
    "": 1,
    "b": 1,
    **{p: 1000**i for i, p in enumerate("kmgt", 1)},
    **{f"{p}b": 1000**i for i, p in enumerate("kmgt", 1)},
    **{f"{p}ib": 1024**i for i, p in enumerate("kmgt", 1)},
}
_COPY_CHUNK = 1 << 20
# An ISO image costs more than its files' bytes: descriptors, path tables and UDF
# structures (about 570 KiB for a small tree, measured with pycdlib 1.22), and per file
# its data rounded up to whole 2048-byte blocks plus records in three views (about
# 2.6 KiB). These bounds are generous; every image is measured after it is written.
_ISO_BLOCK = 2048
_ISO_FIXED = 640 << 10
_ISO_PER_ENTRY = 3072


def parse_size(text: str) -> int:
    """Bytes in a size such as ``4.7G``, ``4GiB``, ``700M`` or ``1048576``.

    K, M, G and T (also KB, MB, GB, TB) are powers of 1000, as discs and sticks are sold;
    KiB, MiB, GiB and TiB are powers of 1024. Case does not matter; fractions of a byte
    are dropped. ValueError, naming the text, for anything else or for zero.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"size {text!r}: expected a number with an optional unit, such as 4.7G, 4GiB, "
            "700M or 1048576"
        )
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"size {text!r}: unknown unit {unit!r}; expected B, K, M, G, T (powers of 1000) "
            "or KiB, MiB, GiB, TiB (powers of 1024)"
        )
    size = int(Decimal(number) * factor)
    if size <= 0:
        raise ValueError(f"size {text!r}: expected at least one byte")
    return size


@dataclass(frozen=True)
class Written:
    """One thing written to the output: a directory tree or an image, and its size."""

    path: Path
    size: int


def write_media(
    bundle_dir: Path,
    out: Path,
    *,
    fmt: Literal["dir", "iso"],
    volume_size: int | None = None,
) -> list[Written]:
    """Write the bundle for media: a copy of the tree, an ISO image, or volumes of either.

    Without ``volume_size``: ``dir`` copies the tree to ``out``, ``iso`` writes
    ``out/<bundle name>.iso``. With it, the bundle is split into volumes under ``out``
    (``volNN`` directories, or ``volNN.iso`` images for ``iso``).
    """
    if volume_size is not None:
        paths = write_volumes(bundle_dir, out, volume_size=volume_size, as_iso=fmt == "iso")
    elif fmt == "dir":
        copy_bundle(bundle_dir, out)
        paths = [out]
    else:
        paths = [out / f"{_bundle_name(bundle_dir)}.iso"]
        write_iso(bundle_dir, paths[0], volume_id=_bundle_name(bundle_dir))
    return [Written(path, _size_on_disk(path)) for path in paths]


def copy_bundle(bundle_dir: Path, out: Path) -> None:
    """Copy the bundle tree to ``out`` (which must not exist, or be empty), atomically.

    The copy is built in a temporary directory beside ``out``, every file synced, then
    renamed to ``out``; a symbolic link or special file in the bundle is refused.
    """
    files, dirs = _scan_tree(bundle_dir)
    _check_out(out, bundle_dir)
    with staging_dir(out) as stage:
        os.chmod(stage, 0o755)  # noqa: S103 (media are meant to be readable by all)
        for rel in dirs:
            (stage / rel).mkdir()
        for rel, source in files.items():
            _copy_file(source, stage / rel)
        _sync_dirs(stage, dirs)


def write_volumes(
    bundle_dir: Path, out_dir: Path, *, volume_size: int, as_iso: bool = False
) -> list[Path]:
    """Split the bundle into volumes ``out_dir/vol01``, ``vol02``, … (``volNN.iso`` for ISO).

    Each volume holds all of ``metadata/``, a share of the targets packed first-fit
    decreasing, and its ``VOLUME.json``; none is larger than ``volume_size`` bytes (for
    images, the image file). The set is built in a temporary directory beside ``out_dir``
    and renamed into place, so a failed or killed run leaves no partial set. MediaError
    when one target with the metadata cannot fit in a volume.
    """
    bundle = _Bundle.scan(bundle_dir)
    cost = _Cost.iso() if as_iso else _Cost.plain()
    plan = _pack(bundle, cost, volume_size)
    _check_out(out_dir, bundle_dir)
    width = max(2, len(str(len(plan))))
    written: list[Path] = []
    with staging_dir(out_dir) as stage:
        os.chmod(stage, 0o755)  # noqa: S103 (media are meant to be readable by all)
        for number, targets in enumerate(plan, 1):
            name = f"vol{number:0{width}d}"
            record = _volume_json(number, len(plan), targets, bundle.metadata_sha256)
            if as_iso:
                name += ".iso"
                _write_iso_volume(bundle, targets, record, stage / name)
            else:
                _write_dir_volume(bundle, targets, record, stage / name)
            if (size := _size_on_disk(stage / name)) > volume_size:
                raise MediaError(
                    f"{name} came out at {size} bytes, more than the volume size "
                    f"{volume_size}: the size estimate in {__name__} is wrong"
                )
            written.append(out_dir / name)
        fsync_dir(stage)
    return written


@dataclass
class _Bundle:
    """What a bundle directory holds, checked: metadata files and content-addressed targets."""

    root: Path
    metadata: dict[str, Path]  # "metadata/…" → file
    targets: dict[str, int]  # hex → size
    metadata_sha256: str

    @classmethod
    def scan(cls, root: Path) -> _Bundle:
        files, dirs = _scan_tree(root)
        # Metadata, and the installer's bootstrap, go on every volume.
        metadata = {
            rel: path
            for rel, path in files.items()
            if rel.startswith(f"{METADATA_DIR}/") or rel == BOOTSTRAP_FILE
        }
        targets: dict[str, int] = {}
        for rel, path in files.items():
            if rel in metadata:
                continue
            folder, _, name = rel.rpartition("/")
            if folder != _BLOBS or not _HEX64.match(name):
                raise MediaError(
                    f"{rel} in {root} is neither metadata nor a target: expected only "
                    f"{METADATA_DIR}/* and {_BLOBS}/<sha256> in a bundle to split"
                )
            targets[name] = path.lstat().st_size
        for rel in dirs:
            if rel not in (METADATA_DIR, TARGETS_DIR, _BLOBS):
                raise MediaError(
                    f"{rel}/ in {root}: expected only the folders {METADATA_DIR}/ and {_BLOBS}/"
                )
        targets_json = root / METADATA_DIR / "targets.json"
        if f"{METADATA_DIR}/targets.json" not in metadata:
            raise MediaError(f"{targets_json} is missing: expected a signed bundle to split")
        return cls(root, metadata, targets, _sha256_file(targets_json))

    def metadata_bytes(self) -> int:
        return sum(path.lstat().st_size for path in self.metadata.values())


@dataclass(frozen=True)
class _Cost:
    """Bytes a volume spends on a file of a given size, and on the volume itself."""

    fixed: int
    per_entry: int
    block: int

    @classmethod
    def plain(cls) -> _Cost:
        return cls(fixed=0, per_entry=0, block=1)

    @classmethod
    def iso(cls) -> _Cost:
        return cls(fixed=_ISO_FIXED, per_entry=_ISO_PER_ENTRY, block=_ISO_BLOCK)

    def file(self, size: int) -> int:
        return -(-size // self.block) * self.block + self.per_entry

    def base(self, bundle: _Bundle) -> int:
        """Everything but the targets and VOLUME.json: metadata, folders, image structures."""
        folders = 3 * self.file(0)
        meta = sum(self.file(path.lstat().st_size) for path in bundle.metadata.values())
        return self.fixed + folders + meta


@dataclass
class _Bin:
    targets: list[str] = field(default_factory=list)
    bytes: int = 0


def _pack(bundle: _Bundle, cost: _Cost, volume_size: int) -> list[list[str]]:
    """First-fit decreasing: largest targets first, each into the first volume with room."""
    base = cost.base(bundle)
    record_first, record_step = _volume_json_bound()

    def total(bin_: _Bin, extra: int, count: int) -> int:
        record = record_first + record_step * max(count - 1, 0)
        return base + bin_.bytes + extra + cost.file(record)

    if total(_Bin(), 0, 0) > volume_size:
        raise MediaError(
            f"{METADATA_DIR}/ of {bundle.root} alone needs {total(_Bin(), 0, 0)} bytes on "
            f"every volume, more than the volume size {volume_size}"
        )
    bins: list[_Bin] = []
    for hex_, size in sorted(bundle.targets.items(), key=lambda item: (-item[1], item[0])):
        need = cost.file(size)
        for bin_ in bins:
            if total(bin_, need, len(bin_.targets) + 1) <= volume_size:
                break
        else:
            bin_ = _Bin()
            if total(bin_, need, 1) > volume_size:
                raise MediaError(
                    f"{blob_path(hex_)} in {bundle.root} is {size} bytes; with {METADATA_DIR}/ "
                    f"({bundle.metadata_bytes()} bytes) and {VOLUME_FILE} a volume holding it "
                    f"needs {total(bin_, need, 1)} bytes, more than the volume size "
                    f"{volume_size}"
                )
            bins.append(bin_)
        bin_.targets.append(hex_)
        bin_.bytes += need
    return [sorted(bin_.targets) for bin_ in bins] or [[]]


def _volume_json(number: int, count: int, targets: list[str], metadata_sha256: str) -> bytes:
    record = {
        "volume": number,
        "volumes": count,
        "targets": targets,
        "bundle_metadata_sha256": metadata_sha256,
    }
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _volume_json_bound() -> tuple[int, int]:
    """Upper bound of VOLUME.json's size: bytes with one target, and bytes per more."""
    big, hex_ = 10**9 - 1, "0" * 64
    one = len(_volume_json(big, big, [hex_], hex_))
    return one, len(_volume_json(big, big, [hex_, hex_], hex_)) - one


def _write_dir_volume(bundle: _Bundle, targets: list[str], record: bytes, dest: Path) -> None:
    folders = [METADATA_DIR, TARGETS_DIR, _BLOBS]
    for rel in folders:
        (dest / rel).mkdir(parents=True)
    for rel, source in bundle.metadata.items():
        _copy_file(source, dest / rel)
    for hex_ in targets:
        _copy_file(bundle.root / blob_path(hex_), dest / blob_path(hex_))
    with (dest / VOLUME_FILE).open("xb") as handle:
        handle.write(record)
        handle.flush()
        os.fsync(handle.fileno())
    _sync_dirs(dest, folders)
    fsync_dir(dest)


def _write_iso_volume(bundle: _Bundle, targets: list[str], record: bytes, image: Path) -> None:
    files: dict[str, Path | bytes] = dict(bundle.metadata)
    files.update({blob_path(hex_): bundle.root / blob_path(hex_) for hex_ in targets})
    files[VOLUME_FILE] = record
    base = iso_volume_id(_bundle_name(bundle.root))
    suffix = "_" + iso_volume_id(image.stem)
    write_iso_files(
        files,
        image,
        volume_id=iso_volume_id(base[: max(0, 16 - len(suffix))] + suffix),
        dirs=[METADATA_DIR, TARGETS_DIR, _BLOBS],
    )


def _check_out(out: Path, bundle_dir: Path) -> None:
    _refuse_out_inside(out, bundle_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise MediaError(f"{out} exists and is not a directory: expected a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise MediaError(
            f"{out} already exists and is not empty: expected a new or empty folder",
            hint="choose another --out folder, or remove this one",
        )


def _copy_file(source: Path, dest: Path) -> None:
    """Stream ``source`` to the new file ``dest`` and sync it; refuse a link or a change."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise MediaError(f"cannot read {source}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as src:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MediaError(f"{source} is not a regular file")
        with dest.open("xb") as dst:
            copied = 0
            while chunk := src.read(_COPY_CHUNK):
                dst.write(chunk)
                copied += len(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    if copied != info.st_size:
        raise MediaError(
            f"{source} changed while it was copied: expected {info.st_size} bytes, copied {copied}"
        )


def _sync_dirs(root: Path, rels: list[str]) -> None:
    for rel in rels:
        fsync_dir(root / rel)
    fsync_dir(root)


def _sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _bundle_name(bundle_dir: Path) -> str:
    return bundle_dir.resolve().name or "bundle"


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(
        (Path(dirpath) / name).lstat().st_size
        for dirpath, _, names in os.walk(path)
        for name in names
    )


@dataclass(frozen=True)
class _VolumeInfo:
    volume: int
    volumes: int
    targets: tuple[str, ...]
    bundle_metadata_sha256: str


class VolumeReader:
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

    def __enter__(self) -> VolumeReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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


def _parse_volume_json(data: bytes, where: str) -> _VolumeInfo:
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
    return _VolumeInfo(volume, volumes, tuple(targets), digest)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class VolumeSetReader:
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

    def __enter__(self) -> VolumeSetReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
