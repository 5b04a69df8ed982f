"""Images made elsewhere (vLLM's GPU image in production) come from an OCI archive or a
registry reference. A real OCI registry (Debian's docker-registry) runs on loopback here."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.components.build import build_components
from appliance.components.oci import manifest_digest
from appliance.definition import load_definition
from tests.integration.support import free_port, wait_http

HELLO_BUILD = {
    "kind": "go-binary",
    "module": "golang.org/x/example/hello",
    "version": "v0.0.0-20250915201037-7f05d217867b",
    "package": ".",
    "binary": "hello",
    "version_args": None,  # hello prints no version: read it from the build information
    "entrypoint": ["/usr/local/bin/hello"],
}


@pytest.fixture(scope="module")
def hello_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real image as an OCI archive: the one our Go builder makes."""
    root = tmp_path_factory.mktemp("hello")
    (root / "d.yaml").write_text(
        json.dumps(
            {
                "name": "src",
                "version": "1",
                "components": [
                    {
                        "name": "hello-src",
                        "version": "1",
                        "image": "hello.oci.tar",
                        "build": HELLO_BUILD,
                    }
                ],
            }
        )
    )
    report = build_components(load_definition(root / "d.yaml"))
    assert not report.failed, report.failed
    return root / "hello.oci.tar"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A docker-registry bound to loopback, with its storage in a temporary folder."""
    program = shutil.which("docker-registry")
    if program is None:
        pytest.fail("docker-registry is not installed: `make setup` installs it")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    proc = subprocess.Popen(
        [program, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", timeout=30, alive=lambda: proc.poll() is None)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def definition_for(tmp_path: Path, build: dict[str, object]) -> Path:
    path = tmp_path / "prod.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "prod",
                "version": "1",
                "components": [
                    {
                        "name": "vllm",
                        "version": "0.32.0",
                        "image": "out/vllm.oci.tar",
                        "build": {"kind": "image", **build},
                    }
                ],
            }
        )
    )
    return path


def test_image_from_a_registry_with_a_pinned_digest(
    tmp_path: Path, hello_archive: Path, registry: str
) -> None:
    ref = f"docker://{registry}/vendor/vllm-openai:test"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci-archive:{hello_archive}",
            ref,
        ],
        check=True,
    )
    upstream = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    path = definition_for(tmp_path, {"reference": ref, "digest": upstream, "tls_verify": False})
    report = build_components(load_definition(path))
    assert not report.failed, report.failed
    entry = report.results[0].image
    assert entry is not None
    assert entry.source == f"{ref}@{upstream}"
    assert entry.digest == manifest_digest(tmp_path / "out/vllm.oci.tar")


def test_a_digest_mismatch_is_refused_and_nothing_written(
    tmp_path: Path, hello_archive: Path, registry: str
) -> None:
    ref = f"docker://{registry}/vendor/vllm-openai:test"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci-archive:{hello_archive}",
            ref,
        ],
        check=True,
    )
    wrong = "sha256:" + "0" * 64
    path = definition_for(tmp_path, {"reference": ref, "digest": wrong, "tls_verify": False})
    report = build_components(load_definition(path))
    assert [r.name for r in report.failed] == ["vllm"]
    assert f"expected {ref} to have digest {wrong}, found sha256:" in str(report.failed[0].error)
    assert not (tmp_path / "out/vllm.oci.tar").exists()


def test_image_from_an_oci_archive_given_on_the_command_line(
    tmp_path: Path, hello_archive: Path
) -> None:
    path = definition_for(tmp_path, {"reference": "docker://unreachable.invalid/x:1"})
    report = build_components(
        load_definition(path), sources={"vllm": f"oci-archive:{hello_archive}"}
    )
    assert not report.failed, report.failed
    entry = report.results[0].image
    assert entry is not None
    assert entry.source.startswith(f"oci-archive:{hello_archive}@sha256:")
