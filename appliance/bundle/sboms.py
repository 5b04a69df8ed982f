"""A bundle's SBOMs read back from its media: the bundle's and each image's.

Each is checked against the digest its target lists; whether that list itself is
authentic is `bundle verify`'s question (the CLI asks it when given a trust anchor).
"""

from __future__ import annotations

import hashlib

from tuf.api.metadata import TargetFile

from appliance.errors import DigestMismatchError, MediaError, MissingFileError
from appliance.media.layout import SBOM_TARGET, blob_path
from appliance.media.reader import MediaReader

__all__ = ["read_sboms"]


def read_sboms(reader: MediaReader, targets: dict[str, TargetFile]) -> dict[str, bytes]:
    """The SBOM targets (``sbom.cdx.json`` and ``sbom/images/*.cdx.json``) by name."""
    found: dict[str, bytes] = {}
    for name, target in sorted(targets.items()):
        kind = (target.custom or {}).get("kind")
        if name != SBOM_TARGET and kind != "image-sbom":
            continue
        sha = (target.hashes or {}).get("sha256", "")
        try:
            with reader.open(blob_path(sha)) as handle:
                data: bytes = handle.read(target.length + 1)
        except (FileNotFoundError, MediaError):
            raise MissingFileError(
                f"{name} is listed but not on the media", hint="copy the whole bundle again"
            ) from None
        if len(data) != target.length or hashlib.sha256(data).hexdigest() != sha:
            raise DigestMismatchError(
                f"{name} does not match the digest its target lists: the media was altered",
                hint="do not use this media; ask the vendor for a new copy",
            )
        found[name] = data
    if SBOM_TARGET not in found:
        raise MissingFileError(f"the bundle lists no {SBOM_TARGET}")
    return found
