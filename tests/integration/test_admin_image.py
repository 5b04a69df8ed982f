"""The admin image holds our own package, installed from its wheel on the Debian base."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance import __version__
from appliance.components.build import BuildReport
from appliance.db.migrate import head_revision
from appliance.sbom import image_sbom_packages, wheel_key
from tests.integration.support import installed_in_image


def test_admin_image_runs_the_appliance_cli(build_lab: Callable[..., BuildReport]) -> None:
    report = build_lab("appliance-admin")
    image = report.results[0].image
    assert image is not None
    assert image.source == f"appliance=={__version__}"
    assert image.fips.built_for_fips is False  # stated, with the reason, not claimed

    out = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--network",
            "none",
            "localhost/appliance/appliance-admin:0.1.0",
            "--version",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == f"appliance {__version__}"

    # Installed from the wheel, not bind-mounted source: the package lives in the venv.
    where = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/opt/appliance/bin/python",
            "localhost/appliance/appliance-admin:0.1.0",
            "-c",
            "import appliance; print(appliance.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert where.stdout.strip().startswith("/opt/appliance/lib/python3.11/site-packages/")

    # The migrations ship in the wheel: the image can create its database by itself.
    migrated = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--network",
            "none",
            "localhost/appliance/appliance-admin:0.1.0",
            "admin",
            "migrate",
            "--db",
            "sqlite:////tmp/admin.db",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert f"upgraded from empty to revision {head_revision()}" in migrated.stdout


def test_the_admin_image_sbom_lists_what_is_installed(
    build_lab: Callable[..., BuildReport],
) -> None:
    """Issue 16: the SBOM written beside the archive lists every Python and Debian package
    the image really holds, as pip and dpkg inside the image list them."""
    report = build_lab("appliance-admin")
    image = report.results[0].image
    assert image is not None and image.sbom is not None
    data = (report.lock_path.parent / image.sbom).read_bytes()
    assert hashlib.sha256(data).hexdigest() == image.sbom_sha256
    listed = image_sbom_packages(data)

    pip, installed = installed_in_image(
        "localhost/appliance/appliance-admin:0.1.0", "/opt/appliance/bin/python"
    )
    python = {wheel_key(p.name, p.version) for p in listed if p.ecosystem == "pypi"}
    assert pip == python
    assert installed == {(p.name, p.version) for p in listed if p.ecosystem == "deb"}
    # Installed from the wheelhouse: each of those packages carries its wheel's digest.
    document = json.loads(data)
    ours = [c for c in document["components"] if c["name"] == "appliance"]
    assert ours and ours[0]["hashes"][0]["alg"] == "SHA-256"


def test_a_cold_rebuild_gives_the_same_image_digest(
    build_lab: Callable[..., BuildReport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: the same definition and lock, built again on another day (simulated: the
    image and podman's layers removed, the wheels downloaded again into an empty cache),
    give the same image. The Debian base is the same image both times (ADR 0014)."""
    first = build_lab("appliance-admin").results[0].image
    assert first is not None
    subprocess.run(
        ["podman", "rmi", "localhost/appliance/appliance-admin:0.1.0"],
        check=True,
        capture_output=True,
    )
    # Wheels fetched anew into an empty cache; the base image stays in podman's storage.
    monkeypatch.setenv("APPLIANCE_CACHE", str(tmp_path / "cache"))
    second = build_lab("appliance-admin").results[0].image
    assert second is not None
    assert (second.image_id, second.digest) == (first.image_id, first.digest)
