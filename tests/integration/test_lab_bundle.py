"""The lab bundle from the real images, on read-only media, verified by the CLI.

OpenZiti images cannot be built on this machine (the Go proxy refuses the modules), so
the bundle holds every lab component that can: vLLM, the admin service, the tiny model,
and the installer's real wheelhouse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.components.build import BuildReport
from appliance.definition import load_definition
from appliance.sbom import image_sbom_packages, wheel_key
from tests.integration.support import installed_in_image

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        check=False,
        timeout=900,
    )


def read_only(path: Path) -> None:
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        item.chmod(0o555 if item.is_dir() else 0o444)


@pytest.fixture(scope="module")
def lab_bundle(
    build_lab: Callable[..., BuildReport], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, int]:
    build_lab("vllm", "appliance-admin", "tiny-model")
    work = tmp_path_factory.mktemp("lab-bundle")
    definition = work / "lab.yaml"
    definition.write_text(
        json.dumps(
            {
                "name": "lab",
                "version": "2026.11.0",
                "root": os.path.relpath(REPO, work),
                "installer": {
                    "requirements": load_definition(
                        REPO / "bundles/lab.yaml"
                    ).installer.requirements
                },
                "components": [
                    {"name": "vllm", "version": "0.32.0", "image": "build/components/vllm.oci.tar"},
                    {
                        "name": "appliance-admin",
                        "version": "0.1.0",
                        "image": "build/components/appliance-admin.oci.tar",
                    },
                    {
                        "name": "tiny-model",
                        "version": "1",
                        "files": [{"path": "build/models/tiny"}],
                    },
                ],
            }
        )
    )
    made = cli("keys", "init", str(work / "keys"))
    assert made.returncode == 0, made.stderr
    fingerprint = made.stdout.split("root fingerprint: ")[1].split()[0]
    built = cli(
        "bundle",
        "build",
        str(definition),
        "--keys",
        str(work / "keys"),
        "--out",
        str(work / "bundle"),
    )
    assert built.returncode == 0, built.stderr
    archives = sum(
        (REPO / "build/components" / n).stat().st_size
        for n in ("vllm.oci.tar", "appliance-admin.oci.tar")
    )
    return work, fingerprint, archives


def test_shared_layers_are_stored_once(lab_bundle: tuple[Path, str, int]) -> None:
    work, _, archives = lab_bundle
    stored = sum(p.stat().st_size for p in (work / "bundle/targets/sha256").iterdir())
    wheels = sum(
        t["length"]
        for n, t in json.loads((work / "bundle/metadata/targets.json").read_text())["signed"][
            "targets"
        ].items()
        if n.startswith("installer/wheels/")
    )
    # vLLM and the admin image share the Debian base layer: the bundle holds it once.
    assert stored - wheels < archives


def test_verifies_from_a_read_only_iso_and_folder(lab_bundle: tuple[Path, str, int]) -> None:
    work, fingerprint, _ = lab_bundle
    written = cli(
        "media", "write", str(work / "bundle"), "--out", str(work / "media"), "--format", "iso"
    )
    assert written.returncode == 0, written.stderr
    iso = next((work / "media").glob("*.iso"))
    read_only(iso)
    read_only(work / "bundle")
    for media in (iso, work / "bundle"):
        result = cli("bundle", "verify", str(media), "--root-fingerprint", fingerprint)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("OK: bundle lab 2026.11.0 is authentic and intact")
        assert "wheel" not in result.stderr


def test_installer_wheelhouse_installs_offline(
    lab_bundle: tuple[Path, str, int], tmp_path: Path
) -> None:
    """The media's wheels alone install the appliance and Ansible: no index needed."""
    work, _, _ = lab_bundle
    targets = json.loads((work / "bundle/metadata/targets.json").read_text())["signed"]["targets"]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name, target in targets.items():
        if name.startswith("installer/wheels/"):
            blob = work / "bundle/targets/sha256" / target["hashes"]["sha256"]
            (wheels / name.rsplit("/", 1)[1]).write_bytes(blob.read_bytes())
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    install = subprocess.run(
        [
            str(tmp_path / "venv/bin/pip"),
            "install",
            "--no-index",
            "--find-links",
            str(wheels),
            "appliance",
            "ansible-core",
            "ansible-runner",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    version = subprocess.run(
        [str(tmp_path / "venv/bin/appliance"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.startswith("appliance ")
    playbook = subprocess.run(
        [str(tmp_path / "venv/bin/ansible-playbook"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "ansible-playbook [core 2.19.14]" in playbook.stdout


def test_the_bundle_sbom_matches_what_the_vllm_image_holds(
    lab_bundle: tuple[Path, str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: the lab bundle's SBOM of the vLLM image, written out of the verified
    bundle, lists every Python and Debian package the image really holds."""
    work, fingerprint, _ = lab_bundle
    out = tmp_path / "sboms"
    done = cli(
        "bundle", "sbom", str(work / "bundle"), "--out", str(out), "--root-fingerprint", fingerprint
    )
    assert done.returncode == 0, done.stderr
    assert "2 image SBOMs (bundle lab 2026.11.0 verified)" in done.stdout
    listed = image_sbom_packages((out / "sbom/images/vllm.cdx.json").read_bytes())

    pip, installed = installed_in_image("localhost/appliance/vllm:0.32.0", "/opt/vllm/bin/python")
    python = {wheel_key(p.name, p.version) for p in listed if p.ecosystem == "pypi"}
    assert pip == python
    assert any(name == "torch" for name, _ in python) and len(python) > 100
    assert installed == {(p.name, p.version) for p in listed if p.ecosystem == "deb"}
    monkeypatch.setenv("COLUMNS", "250")  # the table on one line per component
    shown = cli("bundle", "inspect", str(work / "bundle"))
    assert f"{len(python)} pypi" in shown.stdout, shown.stdout
