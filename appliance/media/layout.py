"""The one place that defines the bundle's layout on media, and its hard limits.

A bundle is a directory tree (or an ISO image, or a set of volumes holding the same tree)::

    metadata/1.root.json        every root version, so a site can follow key rotation
    metadata/2.root.json        …
    metadata/root.json          the newest root (same bytes as the highest N.root.json)
    metadata/timestamp.json     names the snapshot by length and sha256
    metadata/snapshot.json      names targets.json by version, length and sha256
    metadata/targets.json       every target: logical path → length, sha256, custom
    targets/sha256/<hex>        content: each target stored once under its own digest
    VOLUME.json                 on split volumes only: which volume this is (not trusted)
    install.sh                  the installer's bootstrap, to run from the media: a copy of
                                the signed target installer/ansible/installer/install.sh,
                                verified like any target (on every volume of a set)

Logical target paths (the names in targets.json) say what a target is::

    images/<component>/index.json       OCI image index of one component image
    blobs/sha256/<hex>                  OCI blob (manifest, config, layer), shared by images
    files/<component>/<relative path>   a file of a component (model weights, …)
    installer/wheels/<wheel>            the installer's own wheelhouse
    installer/ansible/<relative path>   roles/ and installer/ content
    sbom.cdx.json                       CycloneDX SBOM of everything above, linking:
    sbom/images/<component>.cdx.json    each image's packages (Python, Debian, Go modules)

A target larger than PART_SIZE is stored as parts, each a target of its own named
``<logical path>.partNNN``; the whole is listed with ``custom.parts`` and has no stored
file. No stored file is then ever larger than PART_SIZE (FAT32 holds at most 4 GiB - 1).

Delta media (ADR 0020) hold the whole release's metadata but only the content a base
release lacks. A target the base holds carries ``custom.base_release`` (BASE_RELEASE) in
the signed targets.json: the release it is held in. Only such a target (or a part of one)
may be absent from ``targets/``; the site then finds the whole by its digest in its own
store. SBOMs and the top-level ``install.sh`` are always carried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = [
    "BASE_RELEASE",
    "BOOTSTRAP_FILE",
    "BOOTSTRAP_TARGET",
    "BUNDLE_FIELD",
    "LIMITS",
    "METADATA_DIR",
    "ROLES",
    "SBOM_TARGET",
    "TARGETS_DIR",
    "VOLUME_FILE",
    "Limits",
    "blob_path",
    "image_sbom_target",
    "is_safe_relative",
    "part_name",
    "root_version_of",
    "version_key",
    "versioned_root_name",
]

METADATA_DIR = "metadata"
BOOTSTRAP_FILE = "install.sh"
BOOTSTRAP_TARGET = "installer/ansible/installer/install.sh"
TARGETS_DIR = "targets"
VOLUME_FILE = "VOLUME.json"
ROLES = ("root", "timestamp", "snapshot", "targets")
SBOM_TARGET = "sbom.cdx.json"
#: Field of targets.json's signed part naming the bundle and its version.
BUNDLE_FIELD = "x-appliance-bundle"
#: Key of a target's signed ``custom``: the base release whose content holds it (delta
#: media may leave it out; the site's store must then hold it).
BASE_RELEASE = "base_release"


def image_sbom_target(component: str) -> str:
    """Where the SBOM of an image's contents lies in the bundle (linked from SBOM_TARGET)."""
    return f"sbom/images/{component}.cdx.json"


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSIONED_ROOT = re.compile(r"^([1-9][0-9]{0,8})\.root\.json$")


@dataclass(frozen=True)
class Limits:
    """Hard limits the verifier enforces before trusting anything it reads."""

    max_metadata_bytes: int = 64 * 2**20
    max_root_bytes: int = 512 * 2**10
    max_targets: int = 200_000
    max_path_length: int = 1024
    max_root_rotations: int = 1024
    part_size: int = 2**30


LIMITS = Limits()


def blob_path(sha256_hex: str) -> str:
    """Where the target with this sha256 is stored on media."""
    if not _HEX64.match(sha256_hex):
        raise ValueError(f"not a sha256 hex digest: {sha256_hex!r}")
    return f"{TARGETS_DIR}/sha256/{sha256_hex}"


def versioned_root_name(version: int) -> str:
    """``N.root.json``: root metadata version N in the metadata folder."""
    return f"{version}.root.json"


def root_version_of(name: str) -> int | None:
    """The N of ``N.root.json``, or None for any other name."""
    match = _VERSIONED_ROOT.match(name)
    return int(match.group(1)) if match else None


def part_name(logical: str, index: int) -> str:
    """Logical name of part ``index`` of a large target."""
    return f"{logical}.part{index:03d}"


def is_safe_relative(path: str, *, max_length: int = LIMITS.max_path_length) -> bool:
    """True for a relative POSIX path with no '..', no empty or '.' parts, no backslash."""
    if not path or len(path) > max_length or "\\" in path or "\x00" in path:
        return False
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


_BUNDLE_VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,5}$")


def version_key(version: str) -> tuple[int, ...]:
    """Order bundle versions (``2026.11.0`` < ``2026.11.1`` < ``2026.12.0``).

    Bundle versions are dotted numbers and only ever grow; anything else is refused.
    """
    if not _BUNDLE_VERSION.match(version):
        raise ValueError(f"bundle version {version!r} is not dotted numbers like 2026.11.0")
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
