"""The debootstrap mirror comes from this machine's apt configuration, never from code."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.components.rootfs import debian_mirror
from appliance.errors import PrerequisiteError


def test_deb822_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLIANCE_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.test/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\n"
    )
    assert debian_mirror("bookworm", apt_dir=tmp_path) == "http://mirror.test/debian"


def test_one_line_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLIANCE_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text(
        "# deb http://old.test/debian buster main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.test/debian bookworm main\n"
    )
    assert debian_mirror("bookworm", apt_dir=tmp_path) == "http://one.test/debian"


def test_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_DEBIAN_MIRROR", "http://override.test/debian")
    assert debian_mirror("bookworm", apt_dir=tmp_path) == "http://override.test/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLIANCE_DEBIAN_MIRROR", raising=False)
    with pytest.raises(PrerequisiteError, match="no Debian mirror for 'trixie'") as info:
        debian_mirror("trixie", apt_dir=tmp_path)
    assert info.value.hint is not None
    assert "APPLIANCE_DEBIAN_MIRROR" in info.value.hint
