"""The lab root filesystem cache: keyed on its inputs, never half-built on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.lab import rootfs
from appliance.lab.files import mounts_under


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("APPLIANCE_CACHE", str(tmp_path))
    monkeypatch.setenv("APPLIANCE_DEBIAN_MIRROR", "http://mirror.test/debian")
    return tmp_path


def test_key_is_stable_and_covers_its_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    key = rootfs.rootfs_key("http://mirror.test/debian")
    assert key == rootfs.rootfs_key("http://mirror.test/debian")
    assert key != rootfs.rootfs_key("http://other.test/debian")
    monkeypatch.setattr(rootfs, "RECIPE_VERSION", "lab-rootfs/999")
    bumped = rootfs.rootfs_key("http://mirror.test/debian")
    assert bumped != key
    monkeypatch.setattr(rootfs, "PACKAGES", (*rootfs.PACKAGES, "curl"))
    assert rootfs.rootfs_key("http://mirror.test/debian") != bumped


def test_package_order_does_not_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    key = rootfs.rootfs_key("m")
    monkeypatch.setattr(rootfs, "PACKAGES", tuple(reversed(rootfs.PACKAGES)))
    assert rootfs.rootfs_key("m") == key


def test_recipe_configures_podman_for_nspawn() -> None:
    conf = rootfs.CONTAINERS_CONF
    for line in ("default_ulimits = []", "keyring = false", 'cgroups = "disabled"'):
        assert line in conf
    assert 'runtime = "crun"' in conf
    assert {"systemd", "openssh-server", "python3", "podman", "crun"} <= set(rootfs.PACKAGES)


def test_cached_tree_is_reused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def fake_debootstrap(mirror: str, root: Path) -> None:
        calls.append(root)
        (root / "etc").mkdir(parents=True)

    monkeypatch.setattr(rootfs, "_debootstrap", fake_debootstrap)
    first = rootfs.ensure_lab_rootfs()
    second = rootfs.ensure_lab_rootfs()
    assert first == second
    assert (first / "etc").is_dir()
    assert (first.parent / "complete.json").is_file()
    assert len(calls) == 1
    # Only the finished entry and the lock are left beside it: no staging directories.
    assert sorted(p.name for p in first.parent.parent.iterdir()) == [".lock", first.parent.name]


def test_failed_build_leaves_nothing_that_looks_done(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_debootstrap(mirror: str, root: Path) -> None:
        (root / "etc").mkdir(parents=True)
        raise RuntimeError("debootstrap died")

    monkeypatch.setattr(rootfs, "_debootstrap", broken_debootstrap)
    with pytest.raises(RuntimeError, match="debootstrap died"):
        rootfs.ensure_lab_rootfs()
    entries = cache / "lab" / "rootfs"
    assert sorted(p.name for p in entries.iterdir()) == [".lock"]


def test_killed_build_and_unmarked_tree_are_rebuilt(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = rootfs.rootfs_key("http://mirror.test/debian")
    entries = cache / "lab" / "rootfs"
    # What a SIGKILL leaves: a staging directory, and a final tree without its marker.
    (entries / f".{key}.deadbeef.tmp" / "root").mkdir(parents=True)
    (entries / key / "root").mkdir(parents=True)
    monkeypatch.setattr(
        rootfs, "_debootstrap", lambda mirror, root: (root / "bin").mkdir(parents=True)
    )
    root = rootfs.ensure_lab_rootfs()
    assert (root / "bin").is_dir()
    assert sorted(p.name for p in entries.iterdir()) == [".lock", key]


def test_mounts_under_reads_mountinfo(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / /proc rw - proc proc rw\n"
        "90 1 0:50 / /st/x/root/proc rw - proc proc rw\n"
        "91 90 0:51 / /st/x/root/proc/sys rw - sysfs sysfs rw\n"
        "92 1 0:52 / /st/x/with\\040space rw - tmpfs tmpfs rw\n"
        "93 1 0:53 / /st/xy rw - tmpfs tmpfs rw\n"
    )
    assert mounts_under(Path("/st/x"), mountinfo=info) == [
        Path("/st/x/root/proc/sys"),
        Path("/st/x/root/proc"),
        Path("/st/x/with space"),
    ]
