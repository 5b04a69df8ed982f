"""Go programs become FROM-scratch images, built with the Go Cryptographic Module.

The OpenZiti modules are refused by this machine's Go proxy, so the builder's whole path
(module download, GOFIPS140 build, scratch image, OCI archive, reproducible digest) is
proven here on a small public module with a main package; the OpenZiti tests use the same
path once their modules can be fetched.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.cache.ledger import read_records
from appliance.components import podman
from appliance.components.build import build_components
from appliance.components.gobuild import build_go_binary, go_build_settings
from appliance.components.images import build_module_image
from appliance.components.oci import manifest_digest
from appliance.definition import GoBinaryBuild, load_definition
from appliance.errors import ApplianceError
from appliance.prune import plan
from appliance.sbom import image_sbom_packages
from appliance.settings import cache_dir

HELLO = {
    "kind": "go-binary",
    "module": "golang.org/x/example/hello",
    "version": "v0.0.0-20250915201037-7f05d217867b",
    "package": ".",
    "binary": "hello",
    "version_args": None,  # hello prints no version: read it from the build information
    "fips140": "v1.0.0",
    "env": {"GODEBUG": "fips140=on"},
    "entrypoint": ["/usr/local/bin/hello"],
}


@pytest.fixture
def hello_definition(tmp_path: Path) -> Path:
    path = tmp_path / "bundle.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "hello",
                "version": "1",
                "components": [
                    {"name": "hello", "version": "1", "image": "out/hello.oci.tar", "build": HELLO}
                ],
            }
        )
    )
    return path


def test_go_binary_image_is_fips_built_and_runs(hello_definition: Path) -> None:
    definition = load_definition(hello_definition)
    report = build_components(definition)
    assert not report.failed, report.failed
    entry = report.results[0].image
    assert entry is not None
    assert entry.fips.built_for_fips
    assert "GOFIPS140=v1.0.0" in entry.fips.detail
    assert entry.source == f"{HELLO['module']}@{HELLO['version']}"
    archive = hello_definition.parent / "out/hello.oci.tar"
    assert manifest_digest(archive) == entry.digest
    lock = json.loads((hello_definition.parent / "out/components.lock.json").read_text())
    assert [i["name"] for i in lock["images"]] == ["hello"]

    spec = GoBinaryBuild.model_validate(HELLO)
    binary = build_go_binary(spec)
    assert binary.cached  # the second request reuses the cache
    assert go_build_settings(binary.path)["GOFIPS140"].startswith("v1.0.0-")
    assert go_build_settings(binary.path)["CGO_ENABLED"] == "0"

    run = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "localhost/appliance/hello:1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert run.stdout.strip() == "Hello, world!"
    env = podman_env("localhost/appliance/hello:1")
    assert "GODEBUG=fips140=on" in env


def test_same_inputs_give_the_same_image_digest(hello_definition: Path, tmp_path: Path) -> None:
    definition = load_definition(hello_definition)
    component = definition.component("hello")
    spec = GoBinaryBuild.model_validate(HELLO)
    digests = []
    for attempt in range(2):
        built = build_module_image(component, spec, no_cache=True)
        archive = tmp_path / f"hello-{attempt}.oci.tar"
        podman.save_oci_archive(built.tag, archive)
        digests.append(manifest_digest(archive))
    assert digests[0] == digests[1]


def test_unknown_module_names_the_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_CACHE", str(tmp_path / "cache"))
    spec = GoBinaryBuild.model_validate(
        {**HELLO, "module": "golang.org/x/example/does-not-exist", "version": "v1.0.0"}
    )
    with pytest.raises(
        ApplianceError, match=re.escape("golang.org/x/example/does-not-exist@v1.0.0")
    ):
        build_go_binary(spec)


def podman_env(ref: str) -> list[str]:
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{json .Config.Env}}", ref],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(out.stdout))


def test_a_build_records_what_it_used_and_prune_keeps_it(hello_definition: Path) -> None:
    """Issue 16: the build's use record names its Go program and image, and `cache prune`
    keeps them while the output folder exists (what it removes: test_cache_prune.py)."""
    report = build_components(load_definition(hello_definition))
    assert not report.failed, report.failed
    out_dir = report.lock_path.parent.resolve()
    (record,) = [r for r in read_records() if r.owner == out_dir and r.part == "hello"]
    assert [e for e in record.entries if e.startswith("go/bin/")], record
    assert "localhost/appliance/hello:1" in record.images
    planned = {item.what for item in plan().remove}
    assert not planned & {*record.entries, "image localhost/appliance/hello:1"}
    # The image's SBOM lists the modules `go version -m` reads from the program.
    sbom = image_sbom_packages((out_dir / "hello.cdx.json").read_bytes())
    (program,) = [cache_dir() / e / "hello" for e in record.entries if e.startswith("go/bin/")]
    printed = subprocess.run(
        ["go", "version", "-m", str(program)], capture_output=True, text=True, check=True
    ).stdout
    modules = {
        tuple(line.split("\t")[2:4])
        for line in printed.splitlines()
        if line.startswith(("\tmod\t", "\tdep\t"))
    }
    assert {(p.name, p.version) for p in sbom if p.ecosystem == "golang"} == modules
    shutil.rmtree(out_dir)  # the build's output is gone: its record no longer counts
    assert not record.current
