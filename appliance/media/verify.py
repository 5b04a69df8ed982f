"""Deciding whether a bundle is authentic, intact, complete and newer: the trust boundary.

The verifier reads only through a MediaReader and writes nothing. It raises on the first
problem, with the file and what was expected; it never returns a flag to be forgotten.

Order of checks (TUF client workflow, then content):
1. the media's tree: no links, no odd nodes, no unsafe names, nothing unexpected;
2. trust anchor (a root given by the site, by file, or by fingerprint), then each newer
   root on the media, each signed by the old root's threshold and its own;
3. timestamp, snapshot, targets: signatures, versions, expiry, and each file's length
   and sha256 as the role above names it (so metadata from two bundles cannot mix);
4. the bundle's version against the site's (rollback, replay);
5. every target's length and sha256, streamed, on all cores;
6. on delta media, every target left to the site, in the site's store (media/delta.py).

The whole trust decision reads top to bottom here, in the order the checks run; the
streaming hash (media/hashing.py) and the delta rules (media/delta.py) live beside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from securesystemslib.exceptions import FormatError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from appliance.crypto.keys import SCHEME, fingerprint
from appliance.errors import (
    ExpiredMetadataError,
    MetadataError,
    MissingFileError,
    RollbackError,
    SignatureError,
    SizeMismatchError,
    UnexpectedFileError,
    UnsafePathError,
)
from appliance.media.delta import AtSite, BlobStore, check_store, left_to_site
from appliance.media.hashing import hash_all
from appliance.media.layout import (
    BOOTSTRAP_FILE,
    BOOTSTRAP_TARGET,
    BUNDLE_FIELD,
    LIMITS,
    METADATA_DIR,
    Limits,
    blob_path,
    is_safe_relative,
    root_version_of,
    version_key,
    versioned_root_name,
)
from appliance.media.reader import Entry, MediaReader
from appliance.media.site_state import SiteState

__all__ = ["TrustAnchor", "VerifiedBundle", "check_newer", "verify_bundle"]

_T = TypeVar("_T", Root, Timestamp, Snapshot, Targets)


@dataclass(frozen=True)
class TrustAnchor:
    """Where trust starts: root metadata bytes, or the fingerprint of one on the media."""

    root: bytes | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if (self.root is None) == (self.fingerprint is None):
            raise ValueError("a trust anchor is a root or a fingerprint, exactly one")


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle that passed every check, with what the installer and people need."""

    name: str
    version: str
    root: Root
    root_bytes: bytes
    root_fingerprint: str
    targets: dict[str, TargetFile]
    targets_sha256: str
    versions: dict[str, int]
    expires: dict[str, datetime]
    metadata: dict[str, bytes]
    verified_files: int
    verified_bytes: int
    missing: list[str] = field(default_factory=list)
    #: Delta media: the whole targets left to the site's store, by sha256.
    at_site: dict[str, AtSite] = field(default_factory=dict)
    #: True when every one of ``at_site`` was found and re-hashed in the site's store.
    at_site_verified: bool = False


def verify_bundle(
    reader: MediaReader,
    anchor: TrustAnchor,
    *,
    site: SiteState | None = None,
    now: datetime | None = None,
    partial: bool = False,
    store: BlobStore | None = None,
    limits: Limits = LIMITS,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> VerifiedBundle:
    """Verify the bundle on ``reader`` against ``anchor`` (and the site's state, if given).

    ``partial`` is for one volume of a set: files that the metadata names but this volume
    does not hold are listed in ``missing`` instead of failing; everything present must
    still verify. ``on_progress`` receives byte counts as content is hashed.

    Delta media leave targets marked with a base release out; on complete media these
    are listed in ``at_site`` and, when a ``store`` (the site's) is given, each must be
    there with its length and sha256, or the media is refused naming the first missing.
    """
    now = now or datetime.now(UTC)
    entries = _scan(reader, limits)
    metadata = {
        path.removeprefix(f"{METADATA_DIR}/"): entry
        for path, entry in entries.items()
        if path.startswith(f"{METADATA_DIR}/")
    }

    chain = _root_chain(reader, metadata, limits)
    _anchor_in_chain(reader, anchor, site, chain)
    root, root_bytes = chain[-1]
    if _read_meta(reader, "root.json", metadata, limits.max_root_bytes) != root_bytes:
        raise MetadataError(
            f"{METADATA_DIR}/root.json differs from the newest root "
            f"{METADATA_DIR}/{versioned_root_name(root.version)}"
        )
    _not_expired("root.json", root, now)

    timestamp_bytes = _read_meta(reader, "timestamp.json", metadata, limits.max_root_bytes)
    timestamp = _verified(root, Timestamp, "timestamp.json", timestamp_bytes)
    _not_expired("timestamp.json", timestamp, now)

    snapshot_bytes = _read_meta(reader, "snapshot.json", metadata, limits.max_metadata_bytes)
    _matches("snapshot.json", snapshot_bytes, timestamp.snapshot_meta, "timestamp.json")
    snapshot = _verified(root, Snapshot, "snapshot.json", snapshot_bytes)
    _version_is("snapshot.json", snapshot.version, timestamp.snapshot_meta.version)
    _not_expired("snapshot.json", snapshot, now)

    targets_meta = snapshot.meta.get("targets.json")
    if targets_meta is None:
        raise MetadataError("snapshot.json does not name targets.json")
    targets_bytes = _read_meta(reader, "targets.json", metadata, limits.max_metadata_bytes)
    _matches("targets.json", targets_bytes, targets_meta, "snapshot.json")
    targets = _verified(root, Targets, "targets.json", targets_bytes)
    _version_is("targets.json", targets.version, targets_meta.version)
    _not_expired("targets.json", targets, now)

    name, version = _bundle_identity(targets)
    versions = {
        "timestamp": timestamp.version,
        "snapshot": snapshot.version,
        "targets": targets.version,
    }
    targets_sha256 = hashlib.sha256(targets_bytes).hexdigest()
    if site is not None:
        _not_a_rollback(site, name, version, versions, targets_sha256)

    stored = _stored_targets(targets.targets, limits)
    if BOOTSTRAP_TARGET in targets.targets:  # its copy at the top must match it too
        stored[BOOTSTRAP_FILE] = targets.targets[BOOTSTRAP_TARGET]
    _no_unexpected_files(entries, stored)
    present = {path: target for path, target in stored.items() if path in entries}
    absent = {path: target for path, target in stored.items() if path not in entries}
    at_site: dict[str, AtSite] = {}
    unmarked: list[str] = []
    if partial:  # on other volumes, or at the site: a volume alone cannot tell
        missing = sorted(target.path for target in absent.values())
    else:
        at_site, unmarked = left_to_site(absent, targets.targets)
        missing = [stored[p].path for p in unmarked]
    if missing and not partial:
        first = unmarked[0]
        raise MissingFileError(
            f"{first} ({stored[first].path}, {stored[first].length} bytes) is named by "
            f"targets.json but is not on {reader.description}"
        )
    for path, target in present.items():
        if entries[path].size != target.length:
            kind = "larger" if entries[path].size > target.length else "smaller"
            raise SizeMismatchError(
                f"{path} ({target.path}) is {entries[path].size} bytes, {kind} than the "
                f"{target.length} bytes targets.json says"
            )
    verified_bytes = hash_all(reader.open, present, workers=workers, on_progress=on_progress)
    if at_site and store is not None:
        verified_bytes += check_store(
            store,
            at_site,
            bundle=name,
            media=reader.description,
            workers=workers,
            on_progress=on_progress,
        )

    return VerifiedBundle(
        name=name,
        version=version,
        root=root,
        root_bytes=root_bytes,
        root_fingerprint=fingerprint(root_bytes),
        targets=dict(targets.targets),
        targets_sha256=targets_sha256,
        versions=versions,
        expires={
            "root": root.expires,
            "timestamp": timestamp.expires,
            "snapshot": snapshot.expires,
            "targets": targets.expires,
        },
        metadata={
            "root.json": root_bytes,
            "timestamp.json": timestamp_bytes,
            "snapshot.json": snapshot_bytes,
            "targets.json": targets_bytes,
        },
        verified_files=len(present),
        verified_bytes=verified_bytes,
        missing=missing,
        at_site=at_site,
        at_site_verified=bool(at_site) and store is not None,
    )


def _scan(reader: MediaReader, limits: Limits) -> dict[str, Entry]:
    files: dict[str, Entry] = {}
    for entry in reader.entries():
        if not is_safe_relative(entry.path, max_length=limits.max_path_length):
            raise UnsafePathError(f"{entry.path!r} on {reader.description} is not a safe path")
        if entry.kind == "symlink":
            raise UnsafePathError(
                f"{entry.path} on {reader.description} is a symbolic link; a bundle holds "
                "only regular files"
            )
        if entry.kind == "other":
            raise UnsafePathError(f"{entry.path} on {reader.description} is not a regular file")
        if entry.kind == "file":
            files[entry.path] = entry
        if len(files) > limits.max_targets + 1024:
            raise UnexpectedFileError(
                f"{reader.description} holds more than {limits.max_targets} files"
            )
    return files


def _read_meta(reader: MediaReader, name: str, metadata: dict[str, Entry], limit: int) -> bytes:
    entry = metadata.get(name)
    if entry is None:
        raise MissingFileError(f"{METADATA_DIR}/{name} is not on {reader.description}")
    if entry.size > limit:
        raise SizeMismatchError(
            f"{METADATA_DIR}/{name} is {entry.size} bytes, over the {limit}-byte limit"
        )
    with reader.open(f"{METADATA_DIR}/{name}") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise SizeMismatchError(f"{METADATA_DIR}/{name} is over the {limit}-byte limit")
    return data


def _parse(cls: type[_T], name: str, data: bytes) -> Metadata[_T]:
    try:
        metadata = Metadata[_T].from_bytes(data)
    except (DeserializationError, FormatError, ValueError, TypeError, KeyError) as exc:
        raise MetadataError(f"{METADATA_DIR}/{name} is not valid TUF metadata: {exc}") from exc
    if not isinstance(metadata.signed, cls):
        raise MetadataError(
            f"{METADATA_DIR}/{name}: expected {cls.type} metadata, found {metadata.signed.type}"
        )
    return metadata


def _verified(root: Root, cls: type[_T], name: str, data: bytes) -> _T:
    metadata = _parse(cls, name, data)
    result = root.get_verification_result(cls.type, metadata.signed_bytes, metadata.signatures)
    if not result.verified:
        raise SignatureError(
            f"{METADATA_DIR}/{name}: expected {result.threshold} valid signature(s) by the "
            f"{cls.type} key(s) {_ids(root.roles[cls.type].keyids)} of root version "
            f"{root.version}, found {len(result.signed)} (signed by "
            f"{_ids(metadata.signatures) or 'no key'})"
        )
    return metadata.signed


def _root_chain(
    reader: MediaReader, metadata: dict[str, Entry], limits: Limits
) -> list[tuple[Root, bytes]]:
    """Every ``N.root.json`` on the media, 1..K without gaps, each signed by its own
    threshold and (from 2 on) by its predecessor's: the vendor's whole key history."""
    versions = sorted(v for name in metadata if (v := root_version_of(name)) is not None)
    if not versions:
        raise MissingFileError(f"{METADATA_DIR}/{versioned_root_name(1)} is not on the media")
    if len(versions) > limits.max_root_rotations:
        raise MetadataError(f"the media holds {len(versions)} root versions, over the limit")
    if versions != list(range(1, len(versions) + 1)):
        gap = next(v for v in range(1, len(versions) + 2) if v not in versions)
        raise MissingFileError(
            f"{METADATA_DIR}/{versioned_root_name(gap)} is missing from the root history"
        )
    chain: list[tuple[Root, bytes]] = []
    for version in versions:
        name = versioned_root_name(version)
        data = _read_meta(reader, name, metadata, limits.max_root_bytes)
        root = _parse(Root, name, data)
        if root.signed.version != version:
            raise MetadataError(
                f"{METADATA_DIR}/{name}: expected root version {version}, found "
                f"version {root.signed.version}"
            )
        previous = chain[-1][0] if chain else None
        result = root.signed.get_root_verification_result(
            previous, root.signed_bytes, root.signatures
        )
        if not result.verified:
            raise SignatureError(
                f"{METADATA_DIR}/{name}: expected signatures by the threshold of "
                + (
                    "its own root keys"
                    if previous is None
                    else f"root version {version - 1}'s keys and of its own"
                )
                + f" (threshold {root.signed.roles[Root.type].threshold}); not met"
            )
        _only_p384(root.signed, name)
        chain.append((root.signed, data))
    return chain


def _anchor_in_chain(
    reader: MediaReader,
    anchor: TrustAnchor,
    site: SiteState | None,
    chain: list[tuple[Root, bytes]],
) -> None:
    """The trust anchor must be one of the roots in the media's verified chain."""
    if site is None and anchor.fingerprint is not None:
        if not any(fingerprint(data) == anchor.fingerprint for _, data in chain):
            raise SignatureError(
                f"no root metadata on {reader.description} has the fingerprint "
                f"{anchor.fingerprint}: this is not the vendor's media, or the fingerprint "
                "was mistyped"
            )
        return
    trusted_bytes = site.root if site is not None else anchor.root
    if trusted_bytes is None:  # TrustAnchor guarantees one of the two
        raise SignatureError("no trust anchor: pass a root, a fingerprint or a site state")
    source = "the site's trusted root" if site is not None else "the given root"
    trusted = _parse(Root, "root.json", trusted_bytes).signed
    if trusted.version > len(chain):
        raise RollbackError(
            f"the media's newest root is version {len(chain)}, older than {source} "
            f"(version {trusted.version})"
        )
    if chain[trusted.version - 1][1] != trusted_bytes:
        raise SignatureError(
            f"the media's {METADATA_DIR}/{versioned_root_name(trusted.version)} is not "
            f"{source}: the bundle does not chain to the root this site trusts"
        )


def _only_p384(root: Root, source: str) -> None:
    for keyid, key in root.keys.items():
        if key.scheme != SCHEME:
            raise SignatureError(
                f"{source}: key {keyid[:16]}… uses {key.scheme}; only {SCHEME} is accepted"
            )


def _matches(name: str, data: bytes, meta: MetaFile, named_by: str) -> None:
    expected = (meta.hashes or {}).get("sha256")
    found = hashlib.sha256(data).hexdigest()
    if meta.length is not None and meta.length != len(data):
        raise MetadataError(
            f"{METADATA_DIR}/{name} is {len(data)} bytes, but {named_by} expects {meta.length}: "
            "metadata from different bundles cannot be mixed"
        )
    if expected is None or expected != found:
        raise MetadataError(
            f"{METADATA_DIR}/{name} has sha256 {found}, but {named_by} expects "
            f"{expected}: metadata from different bundles cannot be mixed"
        )


def _version_is(name: str, found: int, expected: int) -> None:
    if found != expected:
        raise MetadataError(
            f"{METADATA_DIR}/{name}: expected version {expected}, found version {found}"
        )


def _not_expired(name: str, signed: Signed, now: datetime) -> None:
    if signed.is_expired(now):
        raise ExpiredMetadataError(
            f"{METADATA_DIR}/{name} expired at {signed.expires.isoformat()} (now "
            f"{now.replace(microsecond=0).isoformat()})",
            hint="ask the vendor for fresh media; an expired bundle is never installed",
        )


def _bundle_identity(targets: Targets) -> tuple[str, str]:
    info: Any = targets.unrecognized_fields.get(BUNDLE_FIELD)
    if (
        not isinstance(info, dict)
        or not isinstance(info.get("name"), str)
        or not isinstance(info.get("version"), str)
    ):
        raise MetadataError(f"targets.json does not name its bundle ({BUNDLE_FIELD})")
    try:
        version_key(info["version"])
    except ValueError as exc:
        raise MetadataError(f"targets.json: {exc}") from exc
    return info["name"], info["version"]


def check_newer(site: SiteState, bundle: VerifiedBundle) -> None:
    """Raise RollbackError unless ``bundle`` is newer than what ``site`` runs.

    For a caller that verified with the site's root as anchor but without its install
    record, because it accepts a rerun of exactly the installed bundle.
    """
    _not_a_rollback(site, bundle.name, bundle.version, bundle.versions, bundle.targets_sha256)


def _not_a_rollback(
    site: SiteState, name: str, version: str, versions: dict[str, int], targets_sha256: str
) -> None:
    installed = site.installed
    if installed is None:
        return
    if installed.bundle != name:
        raise RollbackError(
            f"this media holds bundle {name!r}; the site runs bundle {installed.bundle!r}"
        )
    if version == installed.version and targets_sha256 != installed.targets_sha256:
        raise RollbackError(
            f"bundle {name} {version} is already installed with different content "
            f"(targets sha256 {installed.targets_sha256[:16]}…, this media "
            f"{targets_sha256[:16]}…): a replayed version is refused"
        )
    if version_key(version) <= version_key(installed.version):
        raise RollbackError(
            f"bundle {name} {version} is not newer than the installed {installed.version}",
            hint="install only media newer than what the site runs",
        )
    for role, number in versions.items():
        if number <= installed.versions.get(role, 0):
            raise RollbackError(
                f"{role}.json version {number} is not newer than the site's "
                f"{installed.versions[role]}"
            )


def _stored_targets(targets: dict[str, TargetFile], limits: Limits) -> dict[str, TargetFile]:
    if len(targets) > limits.max_targets:
        raise MetadataError(
            f"targets.json names {len(targets)} targets, over the limit of {limits.max_targets}"
        )
    stored: dict[str, TargetFile] = {}
    for logical, target in targets.items():
        if not is_safe_relative(logical, max_length=limits.max_path_length):
            raise UnsafePathError(f"targets.json names an unsafe target path {logical!r}")
        custom = target.custom or {}
        if custom.get("parts"):
            continue  # stored as its parts, each a target of its own
        digest = (target.hashes or {}).get("sha256", "")
        try:
            path = blob_path(digest)
        except ValueError:
            raise MetadataError(f"targets.json: {logical} has no sha256 hash") from None
        stored.setdefault(path, target)
    return stored


def _no_unexpected_files(entries: dict[str, Entry], stored: dict[str, TargetFile]) -> None:
    allowed_meta = {"root.json", "timestamp.json", "snapshot.json", "targets.json"}
    for path in sorted(entries):
        if path.startswith(f"{METADATA_DIR}/"):
            name = path.removeprefix(f"{METADATA_DIR}/")
            version = root_version_of(name)
            if name in allowed_meta or version is not None:
                continue
        elif path in stored:
            continue
        raise UnexpectedFileError(
            f"{path} is on the media but not named by the signed metadata (an extra, renamed "
            "or swapped-in file)"
        )


def _ids(keyids: object) -> str:
    return ", ".join(sorted(k[:12] + "…" for k in keyids))  # type: ignore[attr-defined]
