"""Python locks: every wheel of every Python image and of the installer, pinned by version
and sha256, committed beside the bundle definition (``bundles/<name>.lock.json``).

`appliance components lock` (locking.py) makes the lock with pip's own resolver report
(``pip install --dry-run --report``) for the platform the images run on (CPython 3.11,
x86_64 Linux), so the pins are what pip itself would install, with the digests the index
gives. A build then downloads exactly the locked wheels with pip's hash-checking mode: a
wheel whose bytes changed upstream is refused, by name. Our own package is never locked
(it is built from this checkout); its dependencies are.

The lock names wheels by file name only: where they were downloaded from is not part of
what was built.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from appliance._fsutil import atomic_write_bytes
from appliance._process import run
from appliance.components.program import sha256_file
from appliance.definition import Definition
from appliance.errors import BuildError, CommandError, DefinitionError

__all__ = [
    "INSTALLER",
    "LockedWheel",
    "PinnedDeb",
    "debian_pins",
    "differing",
    "hash_mismatch",
    "lock_path",
    "locked_for",
    "read_debian_pins",
    "read_lock",
    "requirements_text",
    "resolve",
    "write_lock",
]

FORMAT = "appliance-python-lock/1"
#: The lock's entry for the installer's own wheelhouse (the others are component names).
INSTALLER = "installer"


@dataclass(frozen=True)
class PinnedDeb:
    """A Debian package of the base root filesystem, as debootstrap installed it."""

    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class LockedWheel:
    """One pinned wheel."""

    name: str
    version: str
    sha256: str
    wheel: str


def lock_path(source_dir: Path, bundle: str) -> Path:
    """Where the lock of definition ``bundle`` lies: beside its definition file."""
    return source_dir / f"{bundle}.lock.json"


def _read_document(path: Path) -> Any:
    """The lock file's JSON; None when there is none; DefinitionError if unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DefinitionError(f"the lock {path} cannot be read: {exc}") from exc


def read_lock(path: Path) -> dict[str, list[LockedWheel]] | None:
    """The lock at ``path`` (None when there is none); a malformed one is refused."""
    raw = _read_document(path)
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DefinitionError(f"{path} is not a lock of format {FORMAT}")
    try:
        return {
            part: [LockedWheel(**wheel) for wheel in wheels]
            for part, wheels in raw["locks"].items()
        }
    except (KeyError, TypeError) as exc:
        raise DefinitionError(f"the lock {path} is malformed: {exc}") from exc


def read_debian_pins(path: Path) -> list[PinnedDeb] | None:
    """The base root filesystem's packages the lock at ``path`` pins (None: none pinned)."""
    raw = _read_document(path)
    debian = raw.get("debian") if isinstance(raw, dict) else None
    if not debian:
        return None
    try:
        return [PinnedDeb(**p) for p in debian["packages"]]
    except (KeyError, TypeError) as exc:
        raise DefinitionError(f"the lock {path} is malformed: {exc}") from exc


def differing(pinned: list[PinnedDeb], installed: list[PinnedDeb]) -> list[str]:
    """How ``installed`` differs from ``pinned``, one phrase per package."""
    want = {(p.name, p.arch): p.version for p in pinned}
    have = {(p.name, p.arch): p.version for p in installed}
    said = []
    for key in sorted(want.keys() | have.keys()):
        name = key[0]
        if key not in have:
            said.append(f"{name} {want[key]} is missing")
        elif key not in want:
            said.append(f"{name} {have[key]} is not in the lock")
        elif want[key] != have[key]:
            said.append(f"{name} is {have[key]}, the lock says {want[key]}")
    return said


def write_lock(
    path: Path,
    bundle: str,
    locks: dict[str, list[LockedWheel]],
    debian: tuple[str, list[PinnedDeb]] | None = None,
) -> None:
    """Write the lock, sorted, so that the same pins give the same file; ``debian`` is
    the base's suite and the packages debootstrap installed."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "bundle": bundle,
        "target": "CPython 3.11, x86_64 Linux (manylinux), wheels only",
        "locks": {
            part: [asdict(w) for w in sorted(wheels, key=lambda w: w.name.lower())]
            for part, wheels in sorted(locks.items())
        },
    }
    if debian is not None:
        suite, packages = debian
        document["debian"] = {
            "suite": suite,
            "packages": [asdict(p) for p in sorted(packages, key=lambda p: (p.name, p.arch))],
        }
    atomic_write_bytes(path, (json.dumps(document, indent=1) + "\n").encode())


def resolve(
    requirements: list[str], target: list[str], *, skip: str | None = None
) -> list[LockedWheel]:
    """What pip would install for ``requirements`` on ``target`` (pip's platform options),
    from its resolver report; ``skip`` names our own package, built here, never locked."""
    with tempfile.TemporaryDirectory(prefix="appliance-lock-") as tmp:
        report = Path(tmp) / "report.json"
        argv = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--disable-pip-version-check",
            "--quiet",
            "--report",
            str(report),
            "--target",
            str(Path(tmp) / "target"),
            *target,
            *requirements,
        ]
        try:
            run(argv)
        except CommandError as exc:
            last = exc.output.strip().splitlines()[-1] if exc.output.strip() else str(exc)
            raise BuildError(
                f"pip cannot resolve {' '.join(requirements)}: {last}",
                hint="check the pins in the bundle definition; the CPU torch wheel is not on "
                "PyPI: add the folder that holds it to PIP_FIND_LINKS (make does this)",
            ) from exc
        installs = json.loads(report.read_text())["install"]
    wheels = []
    for item in installs:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if skip is not None and _normal(name) == _normal(skip):
            continue
        info = item.get("download_info") or {}
        url = str(info.get("url", ""))
        sha = ((info.get("archive_info") or {}).get("hashes") or {}).get("sha256")
        if sha is None and url.startswith("file://"):  # a local wheel: hash it ourselves
            sha = sha256_file(Path(url.removeprefix("file://")))
        if sha is None:
            raise BuildError(f"pip's report gives no sha256 for {name} {version}")
        wheels.append(LockedWheel(name, version, sha, unquote(url.rsplit("/", 1)[-1])))
    return wheels


def requirements_text(locked: list[LockedWheel], local: dict[str, tuple[str, str]]) -> str:
    """A requirements file for pip's hash-checking mode: every locked wheel, and our own
    packages (name → (version, sha256)) built here."""
    lines = [f"{w.name}=={w.version} --hash=sha256:{w.sha256}" for w in locked]
    lines += [f"{name}=={version} --hash=sha256:{sha}" for name, (version, sha) in local.items()]
    return "\n".join(sorted(lines)) + "\n"


_MISMATCH = re.compile(r"^\s*(\S+)==(\S+) from .*:\n\s*Expected sha256 (\w+)\n\s*Got\s+(\w+)", re.M)


def hash_mismatch(output: str) -> list[tuple[str, str, str, str]]:
    """(name, version, locked sha256, downloaded sha256) for each wheel pip refused."""
    return [m.groups() for m in _MISMATCH.finditer(output)]  # type: ignore[misc]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_for(definition: Definition, part: str) -> tuple[list[LockedWheel], str] | None:
    """The wheels the definition's lock pins for ``part`` (a component, or INSTALLER), and
    the lock's file name; None when the definition has no lock. A lock that leaves the
    part out is refused: the build would otherwise take whatever the index serves."""
    path = lock_path(definition.source_dir, definition.name)
    locks = read_lock(path)
    if locks is None:
        return None
    if part not in locks:
        raise DefinitionError(
            f"{path.name} pins nothing for {part}",
            hint=f"run `appliance components lock --definition {definition.name}.yaml`",
        )
    return locks[part], path.name


def debian_pins(definition: Definition) -> list[PinnedDeb] | None:
    """The base packages the definition's lock pins (None: no lock, or none pinned)."""
    return read_debian_pins(lock_path(definition.source_dir, definition.name))
