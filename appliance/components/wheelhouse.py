"""Wheelhouses: every wheel an image needs, fetched on the build side so the image build is offline.

Wheels come from the machine's Python package index as pip is configured here, plus any
``--find-links`` folders in ``PIP_FIND_LINKS`` (the CPU torch wheel is not on PyPI).
Cached under ``$APPLIANCE_CACHE/wheelhouse/<key>``.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appliance._fsutil import input_key, staging_dir
from appliance._process import run
from appliance.cache import ledger
from appliance.components.pylock import LockedWheel, hash_mismatch, requirements_text
from appliance.errors import BuildError, CommandError, RegistryRefusedError
from appliance.settings import cache_dir

#: The wheels a lock pins for one image (or the installer), and the lock file's name.
Locked = tuple[list[LockedWheel], str]

__all__ = [
    "TARGET",
    "Locked",
    "Wheelhouse",
    "appliance_source_dir",
    "build_appliance_wheel",
    "download_wheelhouse",
    "installer_wheelhouse",
    "wheelhouse_digest",
]

#: The Python the images run and the workstation's: CPython 3.11 on x86_64 with glibc 2.36
#: (Debian bookworm). pip matches platform tags exactly, so every manylinux level is named.
TARGET = [
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--abi",
    "abi3",
    "--abi",
    "none",
    *(arg for n in range(5, 37) for arg in ("--platform", f"manylinux_2_{n}_x86_64")),
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "manylinux2010_x86_64",
    "--platform",
    "manylinux1_x86_64",
    "--platform",
    "linux_x86_64",
    "--platform",
    "any",
    "--only-binary=:all:",
]


@dataclass(frozen=True)
class Wheelhouse:
    """A folder of wheels and a digest of its exact contents."""

    path: Path
    digest: str
    cached: bool


def download_wheelhouse(
    requirements: list[str],
    *,
    local_wheels: list[Path] | None = None,
    locked: Locked | None = None,
) -> Wheelhouse:
    """Download ``requirements`` and their dependencies as wheels for CPython 3.11 on x86_64.

    ``local_wheels`` (our own freshly built wheel, say) are copied in first and take part
    in resolution. With ``locked`` (the wheels a lock pins, and the lock's name) exactly
    those wheels are downloaded, each checked against its sha256 (pip's hash-checking
    mode): one that differs is refused, by name.
    """
    local = sorted(local_wheels or [])
    # Keyed on what was asked for, not on where pip looked (PIP_FIND_LINKS differs between
    # a developer's shell and make): the pins decide the wheelhouse.
    key = input_key(
        "wheelhouse/2",
        sorted(requirements),
        [_file_sha256(w) for w in local],
        *([sorted((w.name, w.version, w.sha256) for w in locked[0])] if locked else []),
    )
    final = cache_dir() / "wheelhouse" / key
    ledger.note(final)
    if final.is_dir():
        return Wheelhouse(final, wheelhouse_digest(final), cached=True)
    with staging_dir(final) as stage, tempfile.TemporaryDirectory() as scratch:
        for wheel in local:
            (stage / wheel.name).write_bytes(wheel.read_bytes())
        asked = requirements
        if locked:
            pins = Path(scratch) / "requirements.txt"
            pins.write_text(
                requirements_text(locked[0], {_dist(w): _version_sha(w) for w in local})
            )
            asked = ["--require-hashes", "--no-deps", "-r", str(pins)]
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--dest",
            str(stage),
            "--find-links",
            str(stage),
            *TARGET,
            *asked,
        ]
        try:
            run(argv)
        except CommandError as exc:
            last = exc.output.strip().splitlines()[-1] if exc.output.strip() else ""
            refused = hash_mismatch(exc.output)
            if refused and locked:
                said = "; ".join(
                    f"{name} {version}: sha256 {got}, the lock says {want}"
                    for name, version, want, got in refused
                )
                raise BuildError(
                    f"wheels differ from the lock {locked[1]}: {said}",
                    hint="a wheel that changed upstream is not used; review the change, then "
                    "`appliance components lock` records the new digest",
                ) from exc
            if "403" in exc.output:
                raise RegistryRefusedError(
                    f"the Python package index refused a wheel for {' '.join(requirements)}: "
                    f"{last}",
                    hint="this package cannot be fetched from this machine's registries",
                ) from exc
            raise BuildError(
                f"no wheels for {' '.join(requirements)} (CPython 3.11, x86_64): {last}",
                hint="check the pins in the bundle definition; the CPU torch wheel is not on "
                "PyPI: add the folder that holds it to PIP_FIND_LINKS (make does this)",
            ) from exc
    return Wheelhouse(final, wheelhouse_digest(final), cached=False)


def wheelhouse_digest(folder: Path) -> str:
    """sha256 over the names and contents of every wheel in ``folder``."""
    outer = hashlib.sha256()
    for wheel in sorted(folder.glob("*.whl")):
        outer.update(f"{wheel.name}\0{_file_sha256(wheel)}\n".encode())
    return outer.hexdigest()


def installer_wheelhouse(
    requirements: list[str], scratch: Path, locked: Locked | None = None
) -> list[Path]:
    """The installer's wheels: this package's wheel plus ``requirements`` and dependencies
    (exactly the wheels ``locked`` pins, when given)."""
    wheel = build_appliance_wheel(scratch)
    version = wheel.name.split("-")[1]
    house = download_wheelhouse(
        [f"appliance=={version}", *requirements], local_wheels=[wheel], locked=locked
    )
    return sorted(house.path.glob("*.whl"))


def build_appliance_wheel(dest: Path) -> Path:
    """Build this package's wheel into ``dest`` (reproducibly: fixed timestamps)."""
    source = appliance_source_dir()
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(dest),
            str(source),
        ],
        env={"SOURCE_DATE_EPOCH": "315532800"},
    )
    built = sorted(dest.glob("appliance-*.whl"))
    if len(built) != 1:
        raise BuildError(f"expected one appliance wheel from {source}, found {len(built)}")
    return built[0]


def appliance_source_dir() -> Path:
    """The source tree of this package (where pyproject.toml is), to build our own wheel."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise BuildError(
            f"the appliance source tree is not at {root}: cannot build the appliance wheel",
            hint="run the build from a checkout of the appliance repository",
        )
    return root


def _dist(wheel: Path) -> str:
    return wheel.name.split("-")[0]


def _version_sha(wheel: Path) -> tuple[str, str]:
    return wheel.name.split("-")[1], _file_sha256(wheel)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
