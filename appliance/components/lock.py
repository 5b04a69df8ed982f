"""``components.lock.json``: what was built, from which upstream source, with which digest.

One module defines the format. The bundle builder and the installer read it; people read
it to see what a bundle will hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appliance._fsutil import atomic_write_json
from appliance.errors import BuildError

__all__ = [
    "LOCK_NAME",
    "FileLock",
    "Fips",
    "ImageLock",
    "Lock",
    "ProgramLock",
    "read_lock",
    "write_lock",
]

LOCK_NAME = "components.lock.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fips(_Model):
    """Whether a component's cryptography is built for FIPS mode, and why (not)."""

    built_for_fips: bool
    detail: str


class ProgramLock(_Model):
    """The program an image ships, as read from the program itself (never the definition)."""

    path: str = Field(description="where the program lives inside the image")
    version: str = Field(description="what the program prints as its version")
    sha256: str = Field(description="sha256 of the executable")
    go_version: str
    main_module: str
    settings: dict[str, str] = Field(
        description="Go build settings from `go version -m` (GOFIPS140, CGO_ENABLED, …)"
    )
    supplied: str = Field(
        description="how it came: built from the module here, a prebuilt executable or "
        "archive, or an upstream image"
    )


class ImageLock(_Model):
    """One OCI archive image."""

    name: str
    version: str
    source: str = Field(description="upstream source: module@version or package==version")
    archive: str = Field(description="path of the OCI archive, relative to the lock file")
    digest: str = Field(description="sha256 digest of the image manifest")
    image_id: str
    size: int
    fips: Fips
    program: ProgramLock | None = None
    sbom: str | None = Field(
        default=None, description="CycloneDX SBOM of the image's contents, beside the archive"
    )
    sbom_sha256: str | None = None


class FileLock(_Model):
    """A file tree carried by a component (a model, say)."""

    name: str
    version: str
    source: str
    path: str
    sha256: str = Field(description="digest over relative paths and file contents")
    size: int


class Lock(_Model):
    """The whole lock file."""

    format: Literal[1] = 1
    bundle: str
    bundle_version: str
    images: list[ImageLock] = Field(default_factory=list)
    files: list[FileLock] = Field(default_factory=list)


def read_lock(path: Path) -> Lock | None:
    """The lock at ``path``, or None when there is none yet."""
    try:
        return Lock.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError) as exc:
        raise BuildError(
            f"{path} is not a valid components lock: {exc}",
            hint="delete it and build again",
        ) from exc


def write_lock(path: Path, lock: Lock) -> None:
    """Write the lock atomically, entries sorted by name."""
    ordered = lock.model_copy(
        update={
            "images": sorted(lock.images, key=lambda i: i.name),
            "files": sorted(lock.files, key=lambda f: f.name),
        }
    )
    atomic_write_json(path, ordered.model_dump(mode="json"))
