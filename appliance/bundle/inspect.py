"""What a bundle says it holds, read from its metadata without trusting it.

`bundle inspect` is for people deciding what to do with media; `bundle verify` decides
whether to trust it. Nothing here is a trust decision, and the CLI says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from appliance.crypto.keys import fingerprint
from appliance.errors import MetadataError
from appliance.media.layout import BUNDLE_FIELD, METADATA_DIR, SBOM_TARGET, blob_path
from appliance.media.reader import MediaReader
from appliance.sbom import summarise_image_sbom, summarise_sbom

__all__ = ["BundleSummary", "ComponentSummary", "inspect_bundle", "unverified_targets"]


@dataclass
class ComponentSummary:
    """A component as the targets metadata lists it."""

    name: str
    version: str
    size: int = 0
    image_digest: str | None = None
    files: int = 0
    #: Packages in the image by ecosystem (pypi, deb, golang), from its own SBOM.
    contents: dict[str, int] = field(default_factory=dict)


@dataclass
class BundleSummary:
    """Everything `bundle inspect` prints."""

    name: str
    version: str
    root_fingerprint: str
    root_version: int
    roles: dict[str, tuple[int, list[str]]]
    expires: dict[str, datetime]
    components: list[ComponentSummary]
    targets: int
    total_bytes: int
    sbom: dict[str, int] = field(default_factory=dict)


def inspect_bundle(reader: MediaReader) -> BundleSummary:
    """Summarise the bundle on ``reader`` from its (unverified) metadata."""
    root_bytes = _read(reader, "root.json")
    root = _load(root_bytes, "root.json").signed
    targets_md = _load(_read(reader, "targets.json"), "targets.json")
    timestamp = _load(_read(reader, "timestamp.json"), "timestamp.json").signed
    snapshot = _load(_read(reader, "snapshot.json"), "snapshot.json").signed
    if not isinstance(root, Root) or not isinstance(targets_md.signed, Targets):
        raise MetadataError("root.json or targets.json is not of its role")
    targets = targets_md.signed
    info = targets.unrecognized_fields.get(BUNDLE_FIELD) or {}

    components: dict[str, ComponentSummary] = {}
    for logical, target in targets.targets.items():
        custom = target.custom or {}
        name = custom.get("component")
        if not name:
            continue
        summary = components.setdefault(name, ComponentSummary(name, custom.get("version", "")))
        if custom.get("kind") == "oci-index":
            summary.image_digest = custom.get("manifest")
            summary.size += _image_size(reader, targets, logical)
        elif custom.get("kind") == "image-sbom":
            summary.contents = summarise_image_sbom(_target_bytes(reader, target))
        else:
            summary.files += 1
            summary.size += target.length

    sbom: dict[str, int] = {}
    sbom_target = targets.targets.get(SBOM_TARGET)
    if sbom_target is not None:
        sbom = summarise_sbom(_target_bytes(reader, sbom_target))

    return BundleSummary(
        name=str(info.get("name", "?")),
        version=str(info.get("version", "?")),
        root_fingerprint=fingerprint(root_bytes),
        root_version=root.version,
        roles={name: (role.threshold, list(role.keyids)) for name, role in root.roles.items()},
        expires={
            "root": root.expires,
            "timestamp": timestamp.expires,
            "snapshot": snapshot.expires,
            "targets": targets.expires,
        },
        components=sorted(components.values(), key=lambda c: c.name),
        targets=len(targets.targets),
        total_bytes=sum(
            t.length for t in targets.targets.values() if not (t.custom or {}).get("part_of")
        ),
        sbom=sbom,
    )


def unverified_targets(reader: MediaReader) -> dict[str, TargetFile]:
    """The targets the bundle's targets.json lists, its signatures not checked."""
    targets = _load(_read(reader, "targets.json"), "targets.json").signed
    if not isinstance(targets, Targets):
        raise MetadataError("targets.json is not of its role")
    return dict(targets.targets)


def _image_size(reader: MediaReader, targets: Targets, index_logical: str) -> int:
    """Bytes of the manifest, config and layers of one image (shared layers counted)."""
    index = targets.targets[index_logical]
    with reader.open(blob_path((index.hashes or {})["sha256"])) as handle:
        manifest_digest = json.loads(handle.read(index.length))["manifests"][0]["digest"]
    manifest_target = targets.targets.get(f"blobs/sha256/{manifest_digest.split(':')[1]}")
    if manifest_target is None:
        return 0
    with reader.open(blob_path((manifest_target.hashes or {})["sha256"])) as handle:
        manifest = json.loads(handle.read(manifest_target.length))
    return int(
        manifest_target.length
        + manifest["config"]["size"]
        + sum(layer["size"] for layer in manifest.get("layers", []))
    )


def _read(reader: MediaReader, name: str) -> bytes:
    with reader.open(f"{METADATA_DIR}/{name}") as handle:
        return handle.read(64 * 2**20)


def _load(data: bytes, name: str) -> Metadata:  # type: ignore[type-arg]
    try:
        return Metadata.from_bytes(data)
    except Exception as exc:  # any parse failure: the media is not a bundle we can read
        raise MetadataError(f"{METADATA_DIR}/{name} cannot be read: {exc}") from exc


def _target_bytes(reader: MediaReader, target: TargetFile) -> bytes:
    with reader.open(blob_path((target.hashes or {})["sha256"])) as handle:
        data: bytes = handle.read(target.length)
    return data
