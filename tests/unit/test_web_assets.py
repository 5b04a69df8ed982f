"""The recording player's pins: the package's integrity and each file's sha256 are checked
before anything lands in the cache, and the admin service serves only pinned bytes.
No network: npm is replaced by a function that drops a tarball where npm would."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from appliance.components import player
from appliance.errors import ApplianceError
from appliance.web_assets import (
    PLAYER,
    AssetError,
    PinnedPackage,
    check_installed,
    check_package,
    installed,
)

JS = b"var AsciinemaPlayer = {create: function () {}};\n"
CSS = b".ap-player { color: inherit; }\n"


def tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def pin_for(package: bytes, js: bytes = JS) -> PinnedPackage:
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(package).digest()).decode()
    return PinnedPackage(
        "asciinema-player",
        "3.17.0",
        integrity,
        {
            "asciinema-player.min.js": (
                "package/dist/bundle/asciinema-player.min.js",
                hashlib.sha256(js).hexdigest(),
            ),
            "asciinema-player.css": (
                "package/dist/bundle/asciinema-player.css",
                hashlib.sha256(CSS).hexdigest(),
            ),
        },
    )


PACKAGE = tarball(
    {
        "package/dist/bundle/asciinema-player.min.js": JS,
        "package/dist/bundle/asciinema-player.css": CSS,
        "package/README.md": b"readme",
    }
)


def test_the_shipped_pin_names_version_3_17_0_with_an_integrity_and_file_digests() -> None:
    assert PLAYER.spec == "asciinema-player@3.17.0"
    assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", PLAYER.integrity)
    assert {"asciinema-player.min.js", "asciinema-player.css"} <= set(PLAYER.files)
    assert all(re.fullmatch(r"[0-9a-f]{64}", sha) for _, sha in PLAYER.files.values())


def test_a_package_with_the_pinned_integrity_is_installed(tmp_path: Path) -> None:
    pin = pin_for(PACKAGE)
    final = player.install_from_tarball(PACKAGE, tmp_path / "player", pin)
    assert sorted(p.name for p in final.iterdir()) == [
        "asciinema-player.css",
        "asciinema-player.min.js",
    ]
    assert installed(final, pin)
    assert not installed(final)  # these are not the real player's bytes


def test_another_package_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    pin = pin_for(PACKAGE)
    other = tarball({"package/dist/bundle/asciinema-player.min.js": b"evil()"})
    with pytest.raises(AssetError, match="expected the package's integrity sha512-"):
        player.install_from_tarball(other, tmp_path / "player", pin)
    with pytest.raises(AssetError, match="registry served other bytes"):
        check_package(other, pin)
    assert not (tmp_path / "player").exists()


def test_a_file_that_differs_from_its_pin_is_named_and_nothing_is_installed(
    tmp_path: Path,
) -> None:
    pin = pin_for(PACKAGE, js=b"the bytes that were pinned")  # the package holds others
    with pytest.raises(AssetError, match=r"asciinema-player.min.js: expected sha256"):
        player.install_from_tarball(PACKAGE, tmp_path / "player", pin)
    assert not (tmp_path / "player").exists()


def test_fetch_uses_npm_once_and_then_the_checked_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPLIANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(player, "require_program", lambda name: name)
    calls: list[Sequence[str]] = []

    def npm(argv: Sequence[str], **_: object) -> str:
        calls.append(argv)
        destination = Path(argv[argv.index("--pack-destination") + 1])
        (destination / "asciinema-player-3.17.0.tgz").write_bytes(PACKAGE)
        return ""

    monkeypatch.setattr(player, "run", npm)
    pin = pin_for(PACKAGE)
    folder = player.fetch_player(pin)
    assert folder == tmp_path / "cache" / "web" / "asciinema-player-3.17.0"
    assert calls[0][:3] == ["npm", "pack", "asciinema-player@3.17.0"]
    assert "--ignore-scripts" in calls[0]
    assert player.fetch_player(pin) == folder and len(calls) == 1  # cached, checked
    (folder / "asciinema-player.min.js").write_bytes(b"changed")
    assert player.fetch_player(pin) == folder and len(calls) == 2  # refetched
    assert (folder / "asciinema-player.min.js").read_bytes() == JS


def test_npm_serving_other_bytes_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPLIANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(player, "require_program", lambda name: name)

    def npm(argv: Sequence[str], **_: object) -> str:
        destination = Path(argv[argv.index("--pack-destination") + 1])
        (destination / "asciinema-player-3.17.0.tgz").write_bytes(tarball({"x": b"y"}))
        return ""

    monkeypatch.setattr(player, "run", npm)
    with pytest.raises(ApplianceError, match="integrity"):
        player.fetch_player(pin_for(PACKAGE))
    assert not (tmp_path / "cache" / "web" / "asciinema-player-3.17.0").exists()


def test_the_service_serves_only_pinned_names_and_bytes(tmp_path: Path) -> None:
    pin = pin_for(PACKAGE)
    folder = player.install_from_tarball(PACKAGE, tmp_path / "player", pin)
    assert check_installed(folder, "asciinema-player.css", pin) == folder / "asciinema-player.css"
    with pytest.raises(AssetError, match="is not a file of"):
        check_installed(folder, "../admin.db", pin)
    (folder / "asciinema-player.css").write_bytes(b"body{}")
    with pytest.raises(AssetError, match="expected sha256"):
        check_installed(folder, "asciinema-player.css", pin)
    with pytest.raises(AssetError, match="is not installed"):
        check_installed(tmp_path / "none", "asciinema-player.css", pin)
