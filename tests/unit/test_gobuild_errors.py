"""How a Go module download failure reaches the user (a fake `go` stands in for the proxy)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.components.gobuild import build_go_binary
from appliance.definition import GoBinaryBuild
from appliance.errors import BuildError, RegistryRefusedError

SPEC = GoBinaryBuild.model_validate(
    {
        "kind": "go-binary",
        "module": "github.com/openziti/ziti/v2",
        "version": "v2.0.3",
        "package": "./ziti",
        "binary": "ziti",
        "fips140": "v1.0.0",
    }
)


def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, download_error: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answer = json.dumps({"Path": SPEC.module, "Version": SPEC.version, "Error": download_error})
    script = bin_dir / "go"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1 $2" in\n'
        '  "env GOVERSION") echo go1.26.8 ;;\n'
        f"  \"mod download\") cat <<'EOF'\n{answer}\nEOF\n    exit 1 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("APPLIANCE_CACHE", str(tmp_path / "cache"))


def test_proxy_refusal_is_a_registry_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_go(
        tmp_path,
        monkeypatch,
        "github.com/openziti/ziti/v2@v2.0.3: reading https://proxy.test/github.com/openziti/"
        "ziti/v2/@v/v2.0.3.info: 403 Forbidden\n\tserver response: This module version is "
        "not available.",
    )
    with pytest.raises(RegistryRefusedError) as info:
        build_go_binary(SPEC)
    assert str(info.value) == (
        "the Go module proxy refused github.com/openziti/ziti/v2@v2.0.3: "
        "server response: This module version is not available."
    )
    assert info.value.hint is not None
    assert not (tmp_path / "cache/go/bin").exists() or not any(
        (tmp_path / "cache/go/bin").iterdir()
    )


def test_missing_version_is_a_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_go(
        tmp_path,
        monkeypatch,
        "github.com/openziti/ziti/v2@v2.0.3: reading https://proxy.test/...: 404 Not Found\n"
        "\tserver response: not found: unknown revision v2.0.3",
    )
    with pytest.raises(BuildError, match=r"unknown revision v2\.0\.3") as info:
        build_go_binary(SPEC)
    assert info.value.hint == "check the module path and version pinned in the bundle definition"
