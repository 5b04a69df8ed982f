"""The SBOM of a built image's contents, written beside its OCI archive."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from appliance._fsutil import atomic_write_bytes
from appliance._process import run
from appliance.components.contents import mounted_image, read_root
from appliance.components.images import BuiltImage
from appliance.components.program import sha256_file
from appliance.definition import Component
from appliance.errors import BuildError, CommandError
from appliance.sbom import make_image_sbom, wheel_key

__all__ = ["write_image_sbom"]


def write_image_sbom(component: Component, built: BuiltImage, dest: Path) -> None:
    """Read every package in the image ``built`` and write its CycloneDX SBOM to ``dest``.

    The SBOM's time is the image's creation time and its serial number derives from the
    image id, so the same image gives the same SBOM bytes."""
    try:
        with mounted_image(built.tag) as root:
            packages = read_root(root)
        created = run(["podman", "image", "inspect", "--format", "{{.Created.Unix}}", built.tag])
    except CommandError as exc:
        raise BuildError(
            f"{component.name}: its contents could not be read for the SBOM: {exc}",
            hint="the builder mounts images read-only (`podman image mount`): run it as root",
        ) from exc
    wheels: dict[tuple[str, str], str] = {}
    for wheel in sorted(built.wheelhouse.glob("*.whl")) if built.wheelhouse else []:
        name, version = wheel.name.split("-")[:2]
        wheels[wheel_key(name, version)] = sha256_file(wheel)
    data = make_image_sbom(
        component.name,
        component.version,
        packages,
        wheels,
        datetime.fromtimestamp(int(created.strip().splitlines()[-1]), tz=UTC),
        serial=uuid.uuid5(uuid.NAMESPACE_URL, f"appliance-image:{built.image_id}"),
    )
    atomic_write_bytes(dest, data)
