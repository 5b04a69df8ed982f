"""Issue 16: the Debian packages debootstrap installs are recorded in the lock and checked
when the base root filesystem is made again: another version is refused, by name.
(debootstrap is replaced here by a stand-in that lays out a dpkg status file.)"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from appliance.components import rootfs
from appliance.components.pylock import PinnedDeb, differing
from appliance.definition import DebianBase
from appliance.errors import BuildError

BASE = DebianBase(suite="bookworm", variant="minbase", include=["python3"])
STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u10

Package: python3
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("APPLIANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(rootfs, "debian_mirror", lambda _suite: "file:///mirror")
    monkeypatch.setattr(rootfs, "require_program", lambda _name: None)

    def debootstrap_or_tar(argv: list[object], **_: object) -> str:
        if argv[0] == "debootstrap":  # the stand-in: only the dpkg status file
            root = Path(str(argv[-2]))
            (root / "var/lib/dpkg").mkdir(parents=True)
            (root / "var/lib/dpkg/status").write_text(STATUS)
            (root / "etc/apt").mkdir(parents=True)
            return ""
        return subprocess.run(
            [str(a) for a in argv], check=True, capture_output=True, text=True
        ).stdout

    monkeypatch.setattr(rootfs, "run", debootstrap_or_tar)
    return tmp_path / "cache"


def test_the_packages_debootstrap_installed_are_read_for_the_lock(cache: Path) -> None:
    assert rootfs.base_packages(BASE) == [
        PinnedDeb("libc6", "2.36-9+deb12u10", "amd64"),
        PinnedDeb("python3", "3.11.2-1+b1", "amd64"),
    ]
    (tarball,) = (cache / "rootfs").glob("*.tar")
    with tarfile.open(tarball) as archive:
        assert "./var/lib/dpkg/status" in archive.getnames()


def test_a_new_root_filesystem_with_other_versions_is_refused_by_name(cache: Path) -> None:
    pinned = [
        PinnedDeb("libc6", "2.36-9+deb12u9", "amd64"),
        PinnedDeb("python3", "3.11.2-1+b1", "amd64"),
    ]
    tarball = cache / "rootfs/x.tar"
    with pytest.raises(
        BuildError, match=r"libc6 is 2.36-9\+deb12u10, the lock says 2.36-9\+deb12u9"
    ):
        rootfs._debootstrap(BASE, "file:///mirror", tarball, pinned)
    assert not tarball.exists()  # nothing half-made is kept
    exact = [
        PinnedDeb("libc6", "2.36-9+deb12u10", "amd64"),
        PinnedDeb("python3", "3.11.2-1+b1", "amd64"),
    ]
    rootfs._debootstrap(BASE, "file:///mirror", tarball, exact)
    assert tarball.is_file()


def test_differences_are_named_each() -> None:
    pinned = [PinnedDeb("a", "1", "all"), PinnedDeb("b", "2", "amd64")]
    installed = [PinnedDeb("b", "3", "amd64"), PinnedDeb("c", "1", "all")]
    assert differing(pinned, installed) == [
        "a 1 is missing",
        "b is 3, the lock says 2",
        "c 1 is not in the lock",
    ]
    assert differing(pinned, pinned) == []
