"""A full disk is a clear prerequisite error, before or during a build."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from appliance.components import build as build_module
from appliance.components.build import build_components, ensure_free_space
from appliance.definition import load_definition
from appliance.errors import PrerequisiteError


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_too_little_space_refuses_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10 * 2**30, 9 * 2**30, 2**30))
    with pytest.raises(PrerequisiteError, match=r"only 1\.0 GiB free under .*needs 8 GiB"):
        ensure_free_space(tmp_path, 8 * 2**30)


def test_disk_filling_up_mid_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "d.yaml").write_text(
        "name: t\nversion: '1'\ncomponents:\n"
        "  - name: hello\n    version: '1'\n    image: out/hello.oci.tar\n"
        "    build: {kind: go-binary, module: example.test/m, version: v1.0.0,"
        " package: ., binary: hello}\n"
    )

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(build_module, "build_module_image", full)
    report = build_components(load_definition(tmp_path / "d.yaml"))
    [failed] = report.failed
    assert isinstance(failed.error, PrerequisiteError)
    assert str(failed.error) == (
        "hello: the disk filled up while building it; nothing half-written was kept"
    )
    assert not (tmp_path / "out/hello.oci.tar").exists()
