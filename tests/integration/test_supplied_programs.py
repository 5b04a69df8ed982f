"""Go programs supplied prebuilt: a bare executable, a release archive, an upstream image.

The supplied program here is a small Go program of our own with a `version` subcommand,
built with the real Go toolchain the way a vendor builds OpenZiti (GOFIPS140, static,
-trimpath, the version stamped by -ldflags), so `go version -m` reads real build settings.
Whatever the source, the lock records what the program itself says, and a program whose
version or build settings contradict the definition is refused with both values named.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.components import podman
from appliance.components.build import BuildReport, build_components
from appliance.components.gobuild import go_env
from appliance.components.oci import manifest_digest
from appliance.components.program import sha256_file
from appliance.definition import load_definition

PROGRAM = """package main

import (
\t"crypto/sha256"
\t"fmt"
\t"os"
)

var version = "dev"

func main() {
\tif len(os.Args) > 1 && os.Args[1] == "version" {
\t\tfmt.Println(version)
\t\treturn
\t}
\tfmt.Printf("%x\\n", sha256.Sum256([]byte("overlay")))
}
"""

SPEC = {
    "kind": "go-binary",
    "module": "example.test/prog",
    "version": "v1.2.3",
    "package": ".",
    "binary": "prog",
    "fips140": "v1.0.0",
    "env": {"GODEBUG": "fips140=on"},
    "entrypoint": ["/usr/local/bin/prog"],
}


def _go_build(dest: Path, *, version: str, fips: bool) -> Path:
    source = dest.parent / f"src-{dest.name}"
    source.mkdir(parents=True)
    (source / "go.mod").write_text("module example.test/prog\n\ngo 1.26\n")
    (source / "main.go").write_text(PROGRAM)
    env = {**go_env(), "GOFLAGS": "-buildvcs=false"}
    if fips:
        env["GOFIPS140"] = "v1.0.0"
    subprocess.run(
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            f"-X main.version={version}",
            "-o",
            str(dest),
            ".",
        ],
        cwd=source,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    return dest


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The vendor's program at the pinned version, at another version, and without FIPS."""
    root = tmp_path_factory.mktemp("programs")
    return {
        "good": _go_build(root / "good" / "prog", version="v1.2.3", fips=True),
        "old": _go_build(root / "old" / "prog", version="v1.2.2", fips=True),
        "nofips": _go_build(root / "nofips" / "prog", version="v1.2.3", fips=False),
    }


@pytest.fixture
def build(tmp_path: Path) -> Callable[..., BuildReport]:
    """Build the one component of a definition written here, with optional overrides."""

    def run(
        spec: dict[str, object] | None = None,
        *,
        sources: dict[str, str] | None = None,
        supplied: Path | None = None,
    ) -> BuildReport:
        definition = tmp_path / "bundle.yaml"
        component = {"name": "prog", "version": "1.2.3", "image": "out/prog.oci.tar"}
        definition.write_text(
            json.dumps(
                {"name": "t", "version": "1", "components": [{**component, "build": spec or SPEC}]}
            )
        )
        return build_components(load_definition(definition), sources=sources, supplied=supplied)

    return run


def _lock(tmp_path: Path) -> dict[str, object]:
    lock = json.loads((tmp_path / "out/components.lock.json").read_text())
    [image] = lock["images"]
    return dict(image)


def test_a_bare_executable_on_the_command_line_is_imaged_and_locked_from_itself(
    build: Callable[..., BuildReport], programs: dict[str, Path], tmp_path: Path
) -> None:
    report = build(sources={"prog": str(programs["good"])})
    assert not report.failed, report.failed
    image = _lock(tmp_path)
    program = image["program"]
    assert isinstance(program, dict)
    assert program["version"] == "v1.2.3"
    assert program["sha256"] == sha256_file(programs["good"])
    assert program["settings"]["GOFIPS140"].startswith("v1.0.0-")
    assert program["settings"]["CGO_ENABLED"] == "0"
    assert program["settings"]["-trimpath"] == "true"
    assert "fips140=on" in program["settings"]["DefaultGODEBUG"]
    assert program["path"] == "/usr/local/bin/prog"
    assert "prebuilt executable prog" in program["supplied"]
    fips = image["fips"]
    assert isinstance(fips, dict) and fips["built_for_fips"] is True
    assert "read from the program" in fips["detail"]
    assert image["digest"] == manifest_digest(tmp_path / "out/prog.oci.tar")
    out = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "localhost/appliance/prog:1.2.3", "version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "v1.2.3"


def test_a_release_archive_in_the_supplied_folder_pinned_by_sha256(
    build: Callable[..., BuildReport], programs: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "supplied"
    folder.mkdir()
    archive = folder / "prog-linux-amd64-1.2.3.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(programs["good"], arcname="prog")
    report = build(supplied=folder)
    assert not report.failed, report.failed
    program = _lock(tmp_path)["program"]
    assert isinstance(program, dict)
    assert program["sha256"] == sha256_file(programs["good"])
    assert f"release archive {archive.name}" in program["supplied"]

    # The same archive pinned in the definition; a different pin is refused by name.
    pinned = {**SPEC, "supplied": {"reference": "supplied/" + archive.name, "sha256": "0" * 64}}
    [failed] = build(pinned).failed
    assert f"expected {archive} to have sha256 {'0' * 64}" in str(failed.error)
    assert f"found {sha256_file(archive)}" in str(failed.error)


def test_the_upstream_image_as_an_oci_archive_is_shipped_as_it_is(
    build: Callable[..., BuildReport], programs: dict[str, Path], tmp_path: Path
) -> None:
    # An "upstream" image: the program at its upstream path, with its own entrypoint.
    context = tmp_path / "upstream"
    context.mkdir()
    (context / "prog").write_bytes(programs["good"].read_bytes())
    (context / "prog").chmod(0o755)
    (context / "Containerfile").write_text(
        'FROM scratch\nCOPY prog /usr/local/bin/prog\nENTRYPOINT ["/usr/local/bin/prog"]\n'
    )
    podman.build_image(context, "localhost/upstream/prog:v1.2.3")
    upstream = tmp_path / "upstream.oci.tar"
    podman.save_oci_archive("localhost/upstream/prog:v1.2.3", upstream)

    report = build(sources={"prog": f"oci-archive:{upstream}"})
    assert not report.failed, report.failed
    image = _lock(tmp_path)
    program = image["program"]
    assert isinstance(program, dict)
    assert program["version"] == "v1.2.3"
    assert program["sha256"] == sha256_file(programs["good"])
    assert str(image["source"]).startswith(f"supplied: upstream image oci-archive:{upstream}@")
    assert image["fips"]["built_for_fips"] is True  # type: ignore[index]


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("old", "version: the definition pins v1.2.3, the program prints v1.2.2"),
        (
            "nofips",
            "GOFIPS140: the definition asks for v1.0.0, the program was built with no "
            "GOFIPS140 setting",
        ),
    ],
)
def test_a_program_that_contradicts_the_definition_is_refused_with_both_values(
    build: Callable[..., BuildReport],
    programs: dict[str, Path],
    tmp_path: Path,
    which: str,
    expected: str,
) -> None:
    [failed] = build(sources={"prog": str(programs[which])}).failed
    assert expected in str(failed.error)
    assert not (tmp_path / "out/prog.oci.tar").exists()
