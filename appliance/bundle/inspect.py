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
from appliance.media.delta import release_of
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
    #: Delta media: the release whose content holds this component, when none is carried.
    at_site: str | None = None
    carried: bool = False


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
    #: Content on the media: files and bytes (targets/sha256/*).
    carried_files: int = 0
    carried_bytes: int = 0
    #: Delta media: what the site's store must hold, by release: (files, bytes).
    at_site: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Content named, not marked as the site's, and not on this media (another volume).
    elsewhere: int = 0


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

    on_media = {e.path: e.size for e in reader.entries() if e.kind == "file"}
    components: dict[str, ComponentSummary] = {}
    for logical, target in targets.targets.items():
        custom = target.custom or {}
        name = custom.get("component")
        if not name:
            continue
        summary = components.setdefault(name, ComponentSummary(name, custom.get("version", "")))
        release = release_of(logical, target)
        if release is not None:
            summary.at_site = release
        elif custom.get("kind") != "image-sbom":  # SBOMs are always carried
            summary.carried = True
        if custom.get("kind") == "oci-index":
            summary.image_digest = custom.get("manifest")
            summary.size += _image_size(reader, targets, logical, on_media)
        elif custom.get("kind") == "image-sbom":
            if blob_path(_sha(target)) in on_media:
                summary.contents = summarise_image_sbom(_target_bytes(reader, target))
        else:
            summary.files += 1
            summary.size += target.length

    sbom: dict[str, int] = {}
    sbom_target = targets.targets.get(SBOM_TARGET)
    if sbom_target is not None:
        sbom = summarise_sbom(_target_bytes(reader, sbom_target))

    for comp in components.values():
        comp.at_site = None if comp.carried else comp.at_site
    carried, at_site, elsewhere = _where(targets, on_media)
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
        carried_files=len(carried),
        carried_bytes=sum(carried.values()),
        at_site=at_site,
        elsewhere=elsewhere,
    )


def _where(
    targets: Targets, on_media: dict[str, int]
) -> tuple[dict[str, int], dict[str, tuple[int, int]], int]:
    """Stored files on the media; wholes left to the site, by release; others absent."""
    carried: dict[str, int] = {}
    at_site: dict[str, dict[str, int]] = {}
    elsewhere = 0
    for logical, target in targets.targets.items():
        custom = target.custom or {}
        if custom.get("parts"):
            continue
        path = blob_path(_sha(target))
        if path in on_media:
            carried[path] = on_media[path]
            continue
        whole_name = str(custom.get("part_of") or logical)
        whole = targets.targets.get(whole_name, target)
        release = release_of(whole_name, whole)
        if release is None:
            elsewhere += 1
        else:
            at_site.setdefault(release, {})[_sha(whole)] = whole.length
    counted = {r: (len(held), sum(held.values())) for r, held in sorted(at_site.items())}
    return carried, counted, elsewhere


def unverified_targets(reader: MediaReader) -> dict[str, TargetFile]:
    """The targets the bundle's targets.json lists, its signatures not checked."""
    targets = _load(_read(reader, "targets.json"), "targets.json").signed
    if not isinstance(targets, Targets):
        raise MetadataError("targets.json is not of its role")
    return dict(targets.targets)


def _image_size(
    reader: MediaReader, targets: Targets, index_logical: str, on_media: dict[str, int]
) -> int:
    """Bytes of the manifest, config and layers of one image (shared layers counted);
    0 on delta media that leave the image to the site (its manifest is not on them)."""
    index = targets.targets[index_logical]
    if blob_path(_sha(index)) not in on_media:
        return 0
    with reader.open(blob_path((index.hashes or {})["sha256"])) as handle:
        manifest_digest = json.loads(handle.read(index.length))["manifests"][0]["digest"]
    manifest_target = targets.targets.get(f"blobs/sha256/{manifest_digest.split(':')[1]}")
    if manifest_target is None or blob_path(_sha(manifest_target)) not in on_media:
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


def _sha(target: TargetFile) -> str:
    return str((target.hashes or {})["sha256"])


def _target_bytes(reader: MediaReader, target: TargetFile) -> bytes:
    with reader.open(blob_path((target.hashes or {})["sha256"])) as handle:
        data: bytes = handle.read(target.length)
    return data
