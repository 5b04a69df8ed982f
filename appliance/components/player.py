"""The auditors' recording player, fetched on the build side with npm and checked.

``npm pack`` fetches the pinned package's tarball (:data:`appliance.web_assets.PLAYER`)
through the machine's npm configuration; the tarball must have the pinned integrity and
each file taken from it the pinned sha256. The files are cached under
``$APPLIANCE_CACHE/web/<name>-<version>`` and the admin image carries them (see
:func:`appliance.components.images.build_appliance_image`). Nothing here runs at a site.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

from appliance._fsutil import staging_dir
from appliance._process import require_program, run
from appliance.cache import ledger
from appliance.errors import BuildError, CommandError
from appliance.settings import cache_dir
from appliance.web_assets import PLAYER, AssetError, PinnedPackage, check_file, check_package

__all__ = ["fetch_player", "install_from_tarball", "player_cache"]


def player_cache(pin: PinnedPackage = PLAYER) -> Path:
    """Where the checked files of ``pin`` are cached."""
    return cache_dir() / "web" / f"{pin.name}-{pin.version}"


def fetch_player(pin: PinnedPackage = PLAYER) -> Path:
    """The folder holding the pinned player files: from the cache when they still match,
    else fetched with ``npm pack`` and checked. BuildError names what did not match."""
    final = player_cache(pin)
    ledger.note(final)
    try:
        for name in pin.files:
            check_file(name, (final / name).read_bytes(), pin)
        return final
    except (OSError, AssetError):
        pass  # not cached, or not the pinned bytes: fetch again
    require_program("npm")
    with tempfile.TemporaryDirectory(prefix="appliance-npm-") as tmp:
        try:
            run(
                [
                    "npm",
                    "pack",
                    pin.spec,
                    "--pack-destination",
                    tmp,
                    "--cache",
                    str(cache_dir() / "npm"),
                    "--ignore-scripts",
                    "--silent",
                ]
            )
        except CommandError as exc:
            raise BuildError(
                f"npm could not fetch {pin.spec}: {exc.output.strip()[-500:]}",
                hint="check this machine's npm registry configuration (npm config get registry)",
            ) from exc
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise BuildError(f"npm pack {pin.spec} left {len(tarballs)} tarballs, expected one")
        return install_from_tarball(tarballs[0].read_bytes(), final, pin)


def install_from_tarball(tarball: bytes, final: Path, pin: PinnedPackage = PLAYER) -> Path:
    """Check ``tarball`` against ``pin`` and put its pinned files in ``final`` (atomically:
    all or nothing). AssetError when the package or a file is not the pinned bytes."""
    check_package(tarball, pin)
    wanted = {path: name for name, (path, _) in pin.files.items()}
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar:
            if member.name in wanted and member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    found[wanted[member.name]] = handle.read()
    for name in pin.files:
        if name not in found:
            raise AssetError(f"{pin.spec}: the package has no {pin.files[name][0]}")
        check_file(name, found[name], pin)
    with staging_dir(final) as stage:
        stage.chmod(0o755)  # the admin service reads it, whoever it runs as
        for name, data in found.items():
            (stage / name).write_bytes(data)
            (stage / name).chmod(0o644)
    return final
