"""The third-party web assets the admin pages serve, pinned: the one place that names them.

Only the auditors' recording player needs one: asciinema-player's browser build. It is a
build output of another project, so it is not in this repository: the build side fetches
the npm package into the cache (:mod:`appliance.components.player`), checks the package
against its pinned integrity and each file against its pinned sha256, and the admin image
carries the files; the admin service serves them only while they still match
(:func:`check_installed`). Nothing is fetched by a browser at run time.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError

__all__ = [
    "PLAYER",
    "AssetError",
    "PinnedPackage",
    "check_file",
    "check_installed",
    "check_package",
    "installed",
]


class AssetError(ApplianceError):
    """A pinned asset is missing or is not the bytes that were pinned."""


@dataclass(frozen=True)
class PinnedPackage:
    """An npm package at one version: its tarball's integrity and the files taken from it."""

    name: str
    version: str
    #: The tarball's Subresource Integrity string (sha512, as npm's lock files hold it).
    integrity: str
    #: File name in the installed folder -> (path in the tarball, sha256 hex).
    files: dict[str, tuple[str, str]]

    @property
    def spec(self) -> str:
        """``name@version`` for npm."""
        return f"{self.name}@{self.version}"


PLAYER = PinnedPackage(
    name="asciinema-player",
    version="3.17.0",
    integrity="sha512-JbjNJmA2TLIeYNaOEja+kVSzXadKoqpIzVVmfBGNj2DmdtE/vExBCnkE8NYEcpaQcDvUYg8Ltt0urT80frACmw==",
    files={
        "asciinema-player.min.js": (
            "package/dist/bundle/asciinema-player.min.js",
            "a13c37632e1b5c49fe9128417b9319a9b5bc64cb457dd5ae52cbba8a3aceb880",
        ),
        "asciinema-player.css": (
            "package/dist/bundle/asciinema-player.css",
            "f619fe17597043564f03b2c6918b3daf890ee8b912fb408542fba11afade4fdb",
        ),
        "LICENSE": (
            "package/LICENSE",
            "63422284ed65be54ab38d8a94e7518d27e222fbb26c9ae4cd984c63926e91c12",
        ),
    },
)


def check_package(tarball: bytes, pin: PinnedPackage = PLAYER) -> None:
    """Raise AssetError unless ``tarball`` has the pinned integrity."""
    algorithm, _, expected = pin.integrity.partition("-")
    if algorithm != "sha512":
        raise AssetError(f"{pin.spec}: expected a sha512 integrity pin, found {algorithm!r}")
    found = base64.b64encode(hashlib.sha512(tarball).digest()).decode("ascii")
    if found != expected:
        raise AssetError(
            f"{pin.spec}: expected the package's integrity sha512-{expected}, found "
            f"sha512-{found}: the registry served other bytes than were pinned"
        )


def check_file(name: str, data: bytes, pin: PinnedPackage = PLAYER) -> None:
    """Raise AssetError unless ``data`` is the pinned file ``name``."""
    expected = pin.files[name][1]
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise AssetError(f"{pin.spec} {name}: expected sha256 {expected}, found {found}")


_checked: dict[tuple[str, str], tuple[int, int, int]] = {}


def check_installed(folder: Path, name: str, pin: PinnedPackage = PLAYER) -> Path:
    """The path of the pinned file ``name`` in ``folder``; AssetError when it is missing,
    not pinned, or not the pinned bytes (rechecked whenever the file changes)."""
    if name not in pin.files:
        raise AssetError(f"{name!r} is not a file of {pin.spec}")
    path = folder / name
    try:
        stat = path.stat()
    except OSError:
        raise AssetError(
            f"{pin.spec} is not installed: no {path}",
            hint="the admin image carries it; from a checkout, run `appliance components "
            "fetch-player` and set player_assets to the folder it prints",
        ) from None
    seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    key = (str(path), pin.spec)
    if _checked.get(key) != seen:
        check_file(name, path.read_bytes(), pin)
        _checked[key] = seen
    return path


def installed(folder: Path, pin: PinnedPackage = PLAYER) -> bool:
    """Whether every file of ``pin`` is in ``folder`` with its pinned bytes."""
    try:
        for name in pin.files:
            check_installed(folder, name, pin)
    except AssetError:
        return False
    return True
