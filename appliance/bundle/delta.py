"""What a delta is built against: the content a base holds, proven the vendor's own.

``bundle build --since BASE`` takes a previous bundle (a folder, an ISO image or one
volume), its signed ``targets.json`` (or the metadata folder holding it), or a site's
exported state (``appliance site state``). Every targets.json in it must carry the
signature of a targets key of one of the vendor's own roots (the keys folder's root
history), and a site's trusted root must be one of those roots: an altered or foreign
base is refused here, at build time, not at the site. The site checks again anyway: it
finds each left-out target in its own store by size and sha256 (ADR 0020).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root, Targets

from appliance.bundle.signing import root_history
from appliance.errors import MediaError, MetadataError, SignatureError
from appliance.media.layout import BUNDLE_FIELD, METADATA_DIR, version_key
from appliance.media.opener import open_media
from appliance.media.site_export import SITE_STATE_FORMAT, SiteExport, parse_site_export

__all__ = ["Base", "load_base"]

_MAX_METADATA = 64 * 2**20
_HINT = "ask the site for a fresh export (appliance site state --out FILE), or name the bundle"


@dataclass(frozen=True)
class Base:
    """The releases a delta is built against, and every whole target they hold."""

    bundle: str
    source: str
    releases: list[str]
    #: sha256 → (length, newest release holding it)
    held: dict[str, tuple[int, str]] = field(default_factory=dict)

    def release_of(self, sha256_hex: str, length: int) -> str | None:
        """The release that holds this content, or None when the base lacks it."""
        found = self.held.get(sha256_hex)
        return found[1] if found is not None and found[0] == length else None


def load_base(path: Path, keys_dir: Path) -> Base:
    """Read and check what ``path`` holds against the vendor's roots in ``keys_dir``."""
    roots = [
        Metadata[Root].from_bytes(data).signed
        for _, data in sorted(root_history(keys_dir).items(), reverse=True)
    ]
    source = str(path)
    releases: dict[str, dict[str, Any]]
    export = _read_export(path)
    if export is not None:
        _root_is_ours(export.root, keys_dir, source)
        releases = export.releases
    else:
        targets = _targets_of(path)
        info = targets["signed"].get(BUNDLE_FIELD)
        releases = {str(info.get("version") if isinstance(info, dict) else None): targets}
    names: set[str] = set()
    held: dict[str, tuple[int, str]] = {}
    for version in sorted(releases, key=_order):
        signed = _vendor_signed(releases[version], roots, source, version, keys_dir)
        info = signed.unrecognized_fields.get(BUNDLE_FIELD) or {}
        if info.get("version") != version:
            raise MetadataError(
                f"{source}: release {version} holds the targets.json of {info.get('version')!r}",
                hint=_HINT,
            )
        names.add(str(info.get("name")))
        for target in signed.targets.values():
            if not (target.custom or {}).get("part_of"):
                held[(target.hashes or {})["sha256"]] = (target.length, version)
    if len(names) != 1:
        raise MetadataError(f"{source}: expected releases of one bundle, found {sorted(names)}")
    return Base(names.pop(), source, sorted(releases, key=_order), held)


def _read_export(path: Path) -> SiteExport | None:
    """A site-state file, or None when ``path`` is something else."""
    if not path.is_file() or path.stat().st_size > _MAX_METADATA:
        return None
    with path.open("rb") as handle:
        head = handle.read(4096)
    if SITE_STATE_FORMAT.encode() not in head and b'"format"' not in head:
        return None
    return parse_site_export(path.read_bytes(), str(path))


def _targets_of(path: Path) -> dict[str, Any]:
    """targets.json of a bundle on media, of a metadata folder, or the file itself."""
    if path.is_dir() and (path / "targets.json").is_file():
        path = path / "targets.json"
    if path.is_file() and path.suffix == ".json":
        data = path.read_bytes()
    else:
        reader = open_media([path])
        try:
            with reader.open(f"{METADATA_DIR}/targets.json") as handle:
                data = handle.read(_MAX_METADATA)
        except MediaError as exc:
            raise MediaError(
                f"{path} is neither a bundle, its metadata, nor a site state: {exc}",
                hint="--since takes a bundle, its metadata/targets.json, or a site-state file",
            ) from exc
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
    try:
        value: Any = json.loads(data)
    except ValueError as exc:
        raise MetadataError(f"{path}: targets.json is not JSON: {exc}", hint=_HINT) from exc
    if not isinstance(value, dict) or not isinstance(value.get("signed"), dict):
        raise MetadataError(
            f"{path}: expected a bundle's targets.json or a site-state file, found JSON "
            "with no signed metadata in it",
            hint=_HINT,
        )
    return value


def _root_is_ours(root: dict[str, Any], keys_dir: Path, source: str) -> None:
    ours = [json.loads(data) for data in root_history(keys_dir).values()]
    if root not in ours:
        raise SignatureError(
            f"{source}: the root the site trusts is none of the {len(ours)} root version(s) "
            f"in {keys_dir}: the file was altered, or the site trusts other keys",
            hint=_HINT,
        )


def _vendor_signed(
    raw: dict[str, Any], roots: list[Root], source: str, version: str, keys_dir: Path
) -> Targets:
    """The targets of ``raw``, if a targets key of one of ``roots`` signed it."""
    try:
        metadata = Metadata[Targets].from_dict(json.loads(json.dumps(raw)))
    except (ValueError, KeyError, TypeError) as exc:
        raise MetadataError(
            f"{source}: release {version}'s targets.json is not TUF metadata: {exc}", hint=_HINT
        ) from exc
    if not isinstance(metadata.signed, Targets):
        raise MetadataError(f"{source}: release {version} holds {metadata.signed.type} metadata")
    for root in roots:
        result = root.get_verification_result(
            Targets.type, metadata.signed_bytes, metadata.signatures
        )
        if result.verified:
            return metadata.signed
    raise SignatureError(
        f"{source}: release {version}'s targets.json is not signed by a targets key of the "
        f"vendor's roots in {keys_dir}: the file was altered, or comes from other keys",
        hint=_HINT,
    )


def _order(version: str) -> tuple[int, ...]:
    try:
        return version_key(version)
    except ValueError:
        return ()
