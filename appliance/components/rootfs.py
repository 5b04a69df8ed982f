"""A Debian base image made with debootstrap (no base image can be pulled on the build side).

The root filesystem is cached as a tarball under ``$APPLIANCE_CACHE/rootfs/<key>.tar``, the
key covering suite, variant, packages and mirror, and imported into podman as
``localhost/appliance/base:<key>``.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance._fsutil import input_key
from appliance._process import require_program, run
from appliance.cache import ledger
from appliance.components import podman
from appliance.components.contents import installed_debian
from appliance.components.pylock import PinnedDeb, differing
from appliance.errors import BuildError, PrerequisiteError
from appliance.settings import cache_dir

if TYPE_CHECKING:  # annotations only: the lab reads the mirror without the bundle models
    from appliance.definition import DebianBase

__all__ = ["BaseImage", "base_packages", "debian_mirror", "ensure_base_image"]

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class BaseImage:
    """A base image in local podman storage."""

    tag: str
    image_id: str
    cached: bool
    #: The root filesystem tarball it was imported from (kept in the cache).
    rootfs: Path


def debian_mirror(suite: str, *, apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for ``suite``, or ``$APPLIANCE_DEBIAN_MIRROR``."""
    configured = os.environ.get("APPLIANCE_DEBIAN_MIRROR")
    if configured:
        return configured
    for uri, suites in _apt_sources(apt_dir):
        if suite in suites:
            return uri
    raise PrerequisiteError(
        f"no Debian mirror for {suite!r} is configured in this machine's apt sources",
        hint="set APPLIANCE_DEBIAN_MIRROR to a Debian mirror URL",
    )


def ensure_base_image(base: DebianBase, pinned: list[PinnedDeb] | None = None) -> BaseImage:
    """Make (or reuse) the base image for ``base`` and return it. A root filesystem made
    now must hold exactly the ``pinned`` packages (the lock's), else it is refused."""
    mirror = debian_mirror(base.suite)
    tarball, tag = _base_paths(base, mirror)
    ledger.note(tarball)
    ledger.note_image(tag)
    if podman.image_exists(tag):
        return BaseImage(tag, podman.image_id(tag), cached=True, rootfs=tarball)
    if not tarball.is_file():
        _debootstrap(base, mirror, tarball, pinned)
    image = podman.image_from_rootfs(tarball, tag, {"PATH": _PATH, "LANG": "C.UTF-8"})
    return BaseImage(tag, image, cached=False, rootfs=tarball)


def base_packages(base: DebianBase) -> list[PinnedDeb]:
    """The packages of the base root filesystem (debootstrapped now if not cached)."""
    mirror = debian_mirror(base.suite)
    tarball, _tag = _base_paths(base, mirror)
    if not tarball.is_file():
        _debootstrap(base, mirror, tarball, None)
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("./var/lib/dpkg/status")
        if member is None:
            raise PrerequisiteError(f"{tarball} holds no dpkg status")
        return _pins(member.read().decode("utf-8", errors="replace"))


def _pins(status: str) -> list[PinnedDeb]:
    return [
        PinnedDeb(f["Package"], f.get("Version", ""), f.get("Architecture", ""))
        for f in installed_debian(status)
    ]


def _base_paths(base: DebianBase, mirror: str) -> tuple[Path, str]:
    key = input_key("debian-base/2", base.suite, base.variant, sorted(base.include), mirror)
    return cache_dir() / "rootfs" / f"{key}.tar", f"localhost/appliance/base:{key}"


#: Files debootstrap leaves that differ between two runs of the same packages.
_RUN_TO_RUN = (
    "var/cache/ldconfig/aux-cache",
    "var/cache/apt/*.bin",
    "var/lib/dpkg/*-old",
    "var/cache/debconf/*-old",
)


def _debootstrap(
    base: DebianBase, mirror: str, tarball: Path, pinned: list[PinnedDeb] | None
) -> None:
    require_program("debootstrap")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".debootstrap.") as stage:
        root = Path(stage) / "root"
        argv = ["debootstrap", f"--variant={base.variant}"]
        if base.include:
            argv.append(f"--include={','.join(base.include)}")
        argv += [base.suite, str(root), mirror]
        # Dates written during the install (the last password change in /etc/shadow, say)
        # are this one, not today: two runs on two days make the same files.
        run(argv, env={"SOURCE_DATE_EPOCH": "0"})
        if pinned is not None:
            status = (root / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
            said = differing(pinned, _pins(status))
            if said:
                raise BuildError(
                    f"the Debian mirror now installs other packages than the lock pins "
                    f"({base.suite}): {'; '.join(said[:20])}",
                    hint="review the update; `appliance components lock` records the new "
                    "versions (a snapshot mirror, APPLIANCE_DEBIAN_MIRROR, gives the old ones)",
                )
        # The image goes behind an air gap: no package sources, no caches, no logs; and
        # nothing that differs from run to run (caches with times or inode numbers, the
        # build machine's name and resolver), so the same packages give the same bytes.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
            target = root / leftover
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        for pattern in _RUN_TO_RUN:
            for path in root.glob(pattern):
                path.unlink()
        (root / "etc/apt/sources.list").write_text("", encoding="utf-8")
        (root / "etc/hostname").write_text("localhost\n", encoding="utf-8")
        (root / "etc/resolv.conf").write_text("", encoding="utf-8")
        tmp = tarball.with_name(f".{tarball.name}.tmp")
        run(
            [
                "tar",
                "--numeric-owner",
                "--sort=name",
                "--xattrs",
                "--mtime=@0",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                "-C",
                root,
                "-cf",
                tmp,
                ".",
            ]
        )
        os.replace(tmp, tarball)


def _apt_sources(etc: Path) -> list[tuple[str, set[str]]]:
    """(URI, suites) pairs from deb822 ``*.sources`` files and one-line ``sources.list``."""
    found: list[tuple[str, set[str]]] = []
    for path in sorted(etc.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            fields = {
                k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in stanza.splitlines())
                if not k.startswith("#") and v
            }
            if "deb" in fields.get("types", "").split():
                for uri in fields.get("uris", "").split():
                    found.append((uri, set(fields.get("suites", "").split())))
    for path in [etc / "sources.list", *sorted(etc.glob("sources.list.d/*.list"))]:
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                parts = re.sub(r"\[[^]]*\]", "", line).split()
                if len(parts) >= 3 and parts[0] == "deb":
                    found.append((parts[1], {parts[2]}))
    return found
