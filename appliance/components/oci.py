"""Reading facts out of an OCI archive without unpacking it."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from appliance.errors import BuildError

__all__ = ["manifest_digest"]


def manifest_digest(archive: Path) -> str:
    """The digest of the (single) image manifest named by the archive's ``index.json``."""
    try:
        with tarfile.open(archive, "r:") as tar:
            member = tar.extractfile("index.json")
            if member is None:
                raise BuildError(f"{archive}: index.json is not a regular file")
            index = json.load(member)
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise BuildError(f"{archive} is not a readable OCI archive: {exc}") from exc
    manifests = index.get("manifests", [])
    if len(manifests) != 1:
        raise BuildError(f"{archive}: expected one image manifest, found {len(manifests)}")
    digest = manifests[0].get("digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise BuildError(f"{archive}: manifest digest {digest!r} is not a sha256 digest")
    return digest
