"""Build a signed bundle directory from a definition (the vendor's side).

Images are read straight out of their OCI archives (never unpacked to disk) and every
blob is stored once under its digest, so layers shared by several images take space once.
A target larger than the part size is stored as parts. The bundle is written into a
staging folder beside ``out`` and renamed into place only when complete and signed.

Built against a base (``bundle/delta.py``), the bundle is a delta (ADR 0020): its signed
metadata names the whole release, marks each target the base holds with the release
holding it, and only the content the base lacks stays in the folder. The SBOMs are always
carried, so ``bundle sbom`` and ``bundle audit`` read delta media on their own.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from tuf.api.metadata import TargetFile

from appliance._fsutil import staging_dir
from appliance.bundle.delta import Base
from appliance.bundle.signing import TARGETS_EXPIRY, sign_bundle
from appliance.cache import ledger
from appliance.components.wheelhouse import appliance_source_dir
from appliance.definition import Component, Definition
from appliance.errors import BuildError, DefinitionError, UnsafePathError
from appliance.media.layout import (
    BASE_RELEASE,
    BOOTSTRAP_FILE,
    BOOTSTRAP_TARGET,
    LIMITS,
    METADATA_DIR,
    SBOM_TARGET,
    TARGETS_DIR,
    blob_path,
    image_sbom_target,
    is_safe_relative,
    part_name,
    version_key,
    versioned_root_name,
)
from appliance.sbom import ImageSbomRef, SbomItem, make_sbom

__all__ = ["BuildResult", "build_bundle"]

_BLOCK = 1 << 20

#: Builds the installer's wheelhouse into a folder and returns the wheels (injectable so
#: unit tests need no package index).
WheelhouseMaker = Callable[[Definition, Path], list[Path]]


@dataclass
class BuildResult:
    """What `bundle build` wrote."""

    path: Path
    name: str
    version: str
    targets: int
    stored_bytes: int
    logical_bytes: int
    root_fingerprint: str
    images: dict[str, str] = field(default_factory=dict)
    #: Bytes of every image's blobs counted per image, as separate archives would hold them.
    image_bytes: int = 0
    #: A delta: the base releases, and the whole targets (count, bytes) left to the site.
    base: list[str] = field(default_factory=list)
    left_to_site: int = 0
    left_to_site_bytes: int = 0


def build_bundle(
    definition: Definition,
    keys_dir: Path,
    out: Path,
    *,
    wheelhouse: WheelhouseMaker | None = None,
    passphrase: bytes | None = None,
    expires_in: timedelta = TARGETS_EXPIRY,
    now: datetime | None = None,
    part_size: int = LIMITS.part_size,
    on_progress: Callable[[str, int], None] | None = None,
    base: Base | None = None,
) -> BuildResult:
    """Write the signed bundle for ``definition`` to ``out`` (which must not exist yet).

    With ``base``, write delta media: only the content the base lacks (and the SBOMs).
    """
    try:
        version_key(definition.version)
    except ValueError as exc:
        raise DefinitionError(f"{definition.name}: {exc}") from exc
    if base is not None:
        _base_fits(definition, base)
    if out.exists():
        raise BuildError(f"{out} already exists: a bundle is written once, to a new folder")
    now = now or datetime.now(UTC)
    with staging_dir(out) as stage:
        store = _Store(stage, part_size, on_progress)
        sbom: list[SbomItem] = []
        image_bytes = 0
        images: dict[str, str] = {}
        for component in definition.components:
            if component.image is not None:
                archive = definition.resolve(component.image, what=component.name)
                digest, size = _add_image(store, component, archive)
                images[component.name] = digest
                image_bytes += size
                sbom.append(
                    SbomItem(
                        "image",
                        component.name,
                        component.version,
                        digest.removeprefix("sha256:"),
                        _source(component),
                        _add_image_sbom(store, component, archive),
                    )
                )
            for entry in component.files:
                root = definition.resolve(entry.path, what=component.name)
                for logical, sha in _add_files(store, component, root):
                    sbom.append(
                        SbomItem("files", f"{component.name}/{logical}", component.version, sha)
                    )
        if wheelhouse is not None:
            with (
                tempfile.TemporaryDirectory(prefix="bundle-wheels-") as tmp,
                # The latest installer wheelhouse of each definition stays cached while
                # the checkout it is built from exists.
                ledger.using(appliance_source_dir(), f"{definition.name} installer wheelhouse"),
            ):
                for wheel in wheelhouse(definition, Path(tmp)):
                    target = store.add_file(
                        f"installer/wheels/{wheel.name}", wheel, {"kind": "wheel"}
                    )
                    dist, dist_version = wheel.name.split("-")[:2]
                    sbom.append(SbomItem("wheel", dist, dist_version, _sha(target)))
        for folder in definition.installer.content:
            root = definition.resolve(folder, what="installer content")
            if not root.is_dir():
                raise DefinitionError(f"installer content {folder!r} is not a folder")
            for path in _walk(root):
                rel = f"{folder}/{path.relative_to(root).as_posix()}"
                target = store.add_file(f"installer/ansible/{rel}", path, {"kind": "ansible"})
                sbom.append(SbomItem("ansible", rel, definition.version, _sha(target)))
        sbom_bytes = make_sbom(definition.name, definition.version, sbom, now)
        store.add_bytes(SBOM_TARGET, sbom_bytes, {"kind": "sbom"})
        left = _mark_held(store.targets, base) if base is not None else {}

        signed = sign_bundle(
            keys_dir,
            store.targets,
            bundle={"name": definition.name, "version": definition.version},
            passphrase=passphrase,
            expires_in=expires_in,
            now=now,
        )
        meta_dir = stage / METADATA_DIR
        meta_dir.mkdir()
        for root_version, data in signed.root_history.items():
            _write(meta_dir / versioned_root_name(root_version), data)
        for name, data in signed.files.items():
            _write(meta_dir / name, data)
        bootstrap = store.targets.get(BOOTSTRAP_TARGET)
        if bootstrap is not None:  # runnable from the media; verified like its signed twin
            sha = (bootstrap.hashes or {})["sha256"]
            _write(stage / BOOTSTRAP_FILE, (stage / blob_path(sha)).read_bytes())
            os.chmod(stage / BOOTSTRAP_FILE, 0o755)  # noqa: S103 - a script people run
        stored_bytes = store.stored_bytes - _leave_out(stage, store.targets)
        logical_bytes = sum(
            t.length for t in store.targets.values() if not (t.custom or {}).get("part_of")
        )
        root_bytes = signed.files["root.json"]
    # Leaving the block renamed the complete, signed bundle into place.
    return BuildResult(
        path=out,
        name=definition.name,
        version=definition.version,
        targets=len(store.targets),
        stored_bytes=stored_bytes,
        logical_bytes=logical_bytes,
        root_fingerprint="sha256:" + hashlib.sha256(root_bytes).hexdigest(),
        images=images,
        image_bytes=image_bytes,
        base=base.releases if base is not None else [],
        left_to_site=len(left),
        left_to_site_bytes=sum(left.values()),
    )


def _base_fits(definition: Definition, base: Base) -> None:
    """A delta is of the same bundle, against releases older than the one built."""
    if base.bundle != definition.name:
        raise BuildError(
            f"{base.source} holds bundle {base.bundle!r}; this build is {definition.name!r}",
            hint="build against a base of the same bundle",
        )
    newer = [v for v in base.releases if version_key(v) >= version_key(definition.version)]
    if newer:
        raise BuildError(
            f"{base.source} holds {definition.name} {newer[-1]}, not older than this build's "
            f"{definition.version}: a delta goes from older to newer",
            hint="give the bundle a newer version, or build against the right base",
        )


def _mark_held(targets: dict[str, TargetFile], base: Base) -> dict[str, int]:
    """Mark every target the base holds (and its parts) with the release holding it;
    return the wholes marked, by logical name, with their lengths. SBOMs stay carried."""
    left: dict[str, int] = {}
    for logical, target in list(targets.items()):
        custom = target.custom or {}
        if custom.get("part_of") or custom.get("kind") in ("sbom", "image-sbom"):
            continue
        release = base.release_of((target.hashes or {})["sha256"], target.length)
        if release is None:
            continue
        custom[BASE_RELEASE] = release
        for index in range(len(custom.get("parts") or [])):
            part = targets[part_name(logical, index)]
            (part.custom or {})[BASE_RELEASE] = release
        left[logical] = target.length
    return left


def _leave_out(stage: Path, targets: dict[str, TargetFile]) -> int:
    """Remove the stored files of marked targets that no carried target shares; return the
    bytes removed. Run after the metadata and install.sh are written."""
    marked: set[str] = set()
    carried: set[str] = set()
    for target in targets.values():
        custom = target.custom or {}
        if custom.get("parts"):
            continue  # stored as its parts
        (marked if BASE_RELEASE in custom else carried).add((target.hashes or {})["sha256"])
    removed = 0
    for sha in sorted(marked - carried):
        path = stage / blob_path(sha)
        removed += path.stat().st_size
        path.unlink()
    return removed


class _Store:
    """Content-addressed target storage in the staging folder, with part splitting."""

    def __init__(
        self, stage: Path, part_size: int, on_progress: Callable[[str, int], None] | None
    ) -> None:
        self.stage = stage
        self.part_size = part_size
        self.on_progress = on_progress
        self.targets: dict[str, TargetFile] = {}
        self.stored_bytes = 0
        (stage / TARGETS_DIR / "sha256").mkdir(parents=True)

    def add_bytes(self, logical: str, data: bytes, custom: dict[str, Any]) -> TargetFile:
        return self.add_stream(logical, io.BytesIO(data), len(data), custom)

    def add_file(self, logical: str, path: Path, custom: dict[str, Any]) -> TargetFile:
        with path.open("rb") as handle:
            return self.add_stream(logical, handle, path.stat().st_size, custom)

    def add_stream(
        self,
        logical: str,
        stream: IO[bytes],
        length: int,
        custom: dict[str, Any],
        expect_sha256: str | None = None,
    ) -> TargetFile:
        if not is_safe_relative(logical):
            raise UnsafePathError(f"target path {logical!r} is not a safe relative path")
        if logical in self.targets:
            existing = self.targets[logical]
            raise BuildError(f"two targets would be named {logical} ({existing.length} bytes)")
        whole = hashlib.sha256()
        parts: list[str] = []
        remaining = length
        while remaining > 0 or not parts:
            size = min(remaining, self.part_size)
            digest = self._store_chunk(stream, size, whole, logical)
            if length > self.part_size:
                index = len(parts)
                parts.append(digest)
                self.targets[part_name(logical, index)] = TargetFile(
                    size,
                    {"sha256": digest},
                    part_name(logical, index),
                    {"custom": {"part_of": logical, "index": index}},
                )
            remaining -= size
            if remaining == 0:
                break
        if stream.read(1):
            raise BuildError(f"{logical} grew while it was being read: build again")
        found = whole.hexdigest()
        if expect_sha256 is not None and found != expect_sha256:
            raise BuildError(f"{logical}: expected sha256 {expect_sha256}, read {found}")
        custom = {**custom, **({"parts": parts} if parts else {})}
        target = TargetFile(length, {"sha256": found}, logical, {"custom": custom})
        self.targets[logical] = target
        return target

    def _store_chunk(self, stream: IO[bytes], size: int, whole: Any, logical: str) -> str:
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.stage / TARGETS_DIR, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                left = size
                while left > 0:
                    chunk = stream.read(min(_BLOCK, left))
                    if not chunk:
                        raise BuildError(f"{logical} ended {left} bytes early while reading")
                    out.write(chunk)
                    digest.update(chunk)
                    whole.update(chunk)
                    left -= len(chunk)
                    if self.on_progress is not None:
                        self.on_progress(logical, len(chunk))
                out.flush()
                os.fsync(out.fileno())
            hexdigest = digest.hexdigest()
            final = self.stage / blob_path(hexdigest)
            if final.exists():
                os.unlink(tmp)  # stored once, however many images share it
            else:
                os.replace(tmp, final)
                final.chmod(0o444)
                self.stored_bytes += size
            return hexdigest
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _add_image(store: _Store, component: Component, archive: Path) -> tuple[str, int]:
    """Store an OCI archive's blobs and index; return the manifest digest and blob bytes."""
    blob_bytes = 0
    if not archive.is_file():
        raise BuildError(
            f"{component.name}: image archive {archive} does not exist",
            hint="build it first: appliance components build",
        )
    try:
        with tarfile.open(archive, "r:") as tar:
            index_bytes = b""
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isdir() or name == "oci-layout":
                    continue
                if not member.isfile():
                    raise UnsafePathError(
                        f"{archive}: member {member.name!r} is a link or device; an OCI "
                        "archive holds regular files only"
                    )
                if name == "index.json":
                    handle = tar.extractfile(member)
                    index_bytes = handle.read() if handle else b""
                    continue
                digest = name.removeprefix("blobs/sha256/")
                if not name.startswith("blobs/sha256/") or not is_safe_relative(name):
                    raise UnsafePathError(f"{archive}: unexpected member {member.name!r}")
                logical = f"blobs/sha256/{digest}"
                handle = tar.extractfile(member)
                if handle is None:
                    raise BuildError(f"{archive}: cannot read {member.name}")
                if logical in store.targets:
                    if store.targets[logical].length != member.size:
                        raise BuildError(f"{archive}: blob {digest} differs in size")
                    blob_bytes += member.size
                    continue  # the same layer from another image: stored once
                store.add_stream(
                    logical, handle, member.size, {"kind": "oci-blob"}, expect_sha256=digest
                )
                blob_bytes += member.size
    except (OSError, tarfile.TarError) as exc:
        raise BuildError(f"{component.name}: cannot read OCI archive {archive}: {exc}") from exc
    try:
        index = json.loads(index_bytes)
        manifest = str(index["manifests"][0]["digest"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BuildError(f"{archive}: index.json is missing or names no manifest") from exc
    store.add_bytes(
        f"images/{component.name}/index.json",
        index_bytes,
        {
            "kind": "oci-index",
            "component": component.name,
            "version": component.version,
            "manifest": manifest,
        },
    )
    return manifest, blob_bytes


def _add_files(store: _Store, component: Component, root: Path) -> Iterator[tuple[str, str]]:
    if root.is_symlink():
        raise UnsafePathError(f"{component.name}: {root} is a symbolic link")
    if not root.exists():
        raise BuildError(
            f"{component.name}: {root} does not exist",
            hint="build it first: appliance components build",
        )
    paths = [root] if root.is_file() else list(_walk(root))
    for path in paths:
        rel = root.name if path == root else f"{root.name}/{path.relative_to(root).as_posix()}"
        target = store.add_file(
            f"files/{component.name}/{rel}",
            path,
            {
                "kind": "file",
                "component": component.name,
                "version": component.version,
            },
        )
        yield rel, _sha(target)


def _walk(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` in a stable order; links are refused, not followed."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]):
            path = Path(dirpath) / name
            if path.is_symlink():
                raise UnsafePathError(f"{path} is a symbolic link; bundles carry regular files")
            if not path.is_file():
                raise UnsafePathError(f"{path} is not a regular file")
            yield path


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o444)


def _add_image_sbom(store: _Store, component: Component, archive: Path) -> ImageSbomRef | None:
    """The SBOM of the image's contents the build wrote beside its archive, as a target
    the bundle's SBOM links to; None for an image built before image SBOMs existed."""
    made = archive.with_name(f"{component.name}.cdx.json")
    if not made.is_file():
        return None
    name = image_sbom_target(component.name)
    custom = {"kind": "image-sbom", "component": component.name, "version": component.version}
    target = store.add_file(name, made, custom)
    return ImageSbomRef(name, _sha(target))


def _sha(target: TargetFile) -> str:
    return (target.hashes or {})["sha256"]


def _source(component: Component) -> str:
    build = component.build
    if build is None:
        return ""
    module = getattr(build, "module", None)
    if module:
        return f"{module}@{getattr(build, 'version', '')}"
    reference = getattr(build, "reference", None)
    if reference:
        return str(reference)
    return ", ".join(getattr(build, "requirements", []) or [])
