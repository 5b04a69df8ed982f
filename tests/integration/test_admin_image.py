"""The admin image holds our own package, installed from its wheel on the Debian base."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from appliance import __version__
from appliance.components.build import BuildReport
from appliance.db.migrate import head_revision


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
