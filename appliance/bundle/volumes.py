"""Writing a bundle to media: a copy, an ISO image, or volumes (the vendor's side).

A bundle too large for one disc or stick is split into volumes ``vol01``, ``vol02``, …
Every volume carries all of ``metadata/`` (byte-identical copies), some of the
``targets/sha256/*`` files, and a ``VOLUME.json``
(:class:`~appliance.media.volumes.VolumeRecord`, which defines its form). The site reads
volumes back with :mod:`appliance.media.volumes`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from appliance._fsutil import fsync_dir, staging_dir
from appliance.bundle.iso import iso_volume_id, write_iso, write_iso_files
from appliance.bundle.tree import refuse_out_inside, scan_tree
from appliance.errors import MediaError
from appliance.media.layout import (
    BOOTSTRAP_FILE,
    METADATA_DIR,
    TARGETS_DIR,
    VOLUME_FILE,
    blob_path,
)
from appliance.media.volumes import VolumeRecord

__all__ = [
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
    files, dirs = scan_tree(bundle_dir)
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
        files, dirs = scan_tree(root)
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
    return VolumeRecord(number, count, tuple(targets), metadata_sha256).to_bytes()


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
    refuse_out_inside(out, bundle_dir)
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
