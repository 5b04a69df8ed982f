"""Importing a verified bundle into the site's content store, and staging it for Ansible.

The verifier has already decided trust; this module copies what it approved. It hashes
every byte again as it copies (the media could change between verification and import)
and keeps a file only when its digest matches, so the store never holds an unverified
byte. Stages are made of hard links into the store: cheap, and remade when in doubt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tuf.api.metadata import TargetFile

from appliance._fsutil import atomic_write_bytes, fsync_dir, staging_dir
from appliance.errors import DigestMismatchError, InstallError, MediaError, PrerequisiteError
from appliance.install.layout import SiteDir
from appliance.media.layout import blob_path
from appliance.media.reader import Entry, MediaReader
from appliance.media.verify import VerifiedBundle

__all__ = ["Image", "SiteStore", "Staged", "import_bundle", "stage_bundle"]

_BLOCK = 4 * 2**20


@dataclass(frozen=True)
class Image:
    """A component image as the roles load it."""

    component: str
    version: str
    ref: str  # the name podman gives it on load, from the OCI index
    image_id: str  # the config digest's hex: what `podman image inspect` calls Id
    path: Path  # OCI layout folder in the stage


@dataclass(frozen=True)
class Staged:
    """A bundle version laid out for the playbooks."""

    root: Path
    images: dict[str, Image]
    files: dict[str, Path]  # component → folder of its files
    versions: dict[str, str]  # component → version
    ansible: Path

    def extravars(self) -> dict[str, Any]:
        """What the site playbook is told about this bundle."""
        return {
            "appliance_stage_dir": str(self.root),
            "appliance_components": self.versions,
            "appliance_images_catalog": {
                name: {
                    "ref": image.ref,
                    "id": image.image_id,
                    "path": str(image.path),
                    "version": image.version,
                }
                for name, image in sorted(self.images.items())
            },
            "appliance_files": {name: str(path) for name, path in sorted(self.files.items())},
        }


class SiteStore:
    """The site's content store as the verifier reads it (``media.delta.BlobStore``):
    what delta media leave out is found here by digest, and hashed again before use."""

    def __init__(self, site: SiteDir) -> None:
        self.site = site

    @property
    def description(self) -> str:
        """The store's folder."""
        return str(self.site.content)

    def entry(self, sha256_hex: str) -> Entry | None:
        """What the store holds under the digest, links reported as links."""
        try:
            info = self.site.blob(sha256_hex).lstat()
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(info.st_mode):
            return Entry(sha256_hex, "symlink", 0)
        if not stat.S_ISREG(info.st_mode):
            return Entry(sha256_hex, "other", 0)
        return Entry(sha256_hex, "file", info.st_size)

    def open(self, sha256_hex: str) -> BinaryIO:
        """Open read-only, refusing a link swapped in since :meth:`entry`."""
        try:
            fd = os.open(self.site.blob(sha256_hex), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise MediaError(
                f"cannot read {sha256_hex} in the site store {self.description}: {exc.strerror}"
            ) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise MediaError(f"{sha256_hex} in the site store is not a regular file")
        return os.fdopen(fd, "rb")


def import_bundle(
    bundle: VerifiedBundle,
    reader: MediaReader,
    site: SiteDir,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Copy every target the bundle names into the store; return (files copied, bytes).

    Targets already in the store are not copied again, so a rerun after a kill goes on
    where it stopped. Raises when the free space cannot hold what is missing.
    """
    site.content.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, TargetFile] = {}
    for target in bundle.targets.values():
        if not (target.custom or {}).get("part_of"):  # a large file is kept whole, not in parts
            wanted.setdefault(_sha(target), target)
    missing = {sha: t for sha, t in wanted.items() if not site.blob(sha).is_file()}
    need = sum(t.length for t in missing.values())
    free = shutil.disk_usage(site.content).free
    if need > free:
        raise PrerequisiteError(
            f"the site store {site.content} needs {need / 2**30:.2f} GiB for this bundle and "
            f"has {free / 2**30:.2f} GiB free",
            hint="free space there or pass --site-dir on a larger file system",
        )
    copied = 0
    for sha, target in sorted(missing.items(), key=lambda item: item[1].path):
        _import_one(reader, target, site.blob(sha), on_progress)
        copied += target.length
    meta = site.metadata(bundle.version)
    for name, data in bundle.metadata.items():
        atomic_write_bytes(meta / name, data)
    return len(missing), copied


def stage_bundle(bundle: VerifiedBundle, site: SiteDir) -> Staged:
    """Lay the bundle out for the playbooks (hard links into the store) and describe it."""
    final = site.stage(bundle.version)
    with staging_dir(final) as tmp:
        for logical, target in sorted(bundle.targets.items()):
            custom = target.custom or {}
            kind = custom.get("kind")
            if kind == "oci-index":
                _stage_image(site, tmp / "images" / str(custom["component"]), target)
            elif kind in ("file", "ansible"):
                dest = tmp / logical.removeprefix("installer/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(site.blob(_sha(target)), dest)
    return describe_stage(bundle, site)


def describe_stage(bundle: VerifiedBundle, site: SiteDir) -> Staged:
    """The Staged view of a stage folder made earlier for ``bundle``."""
    root = site.stage(bundle.version)
    images: dict[str, Image] = {}
    files: dict[str, Path] = {}
    versions: dict[str, str] = {}
    for logical, target in bundle.targets.items():
        custom = target.custom or {}
        component = custom.get("component")
        if not isinstance(component, str):
            continue
        versions[component] = str(custom.get("version", ""))
        if custom.get("kind") == "oci-index":
            images[component] = _image(root, logical, component, versions[component])
        elif custom.get("kind") == "file":
            files[component] = root / "files" / component
    return Staged(root, images, files, versions, root / "ansible")


def _image(root: Path, logical: str, component: str, version: str) -> Image:
    layout = root / "images" / component
    try:
        index = json.loads((root / logical).read_bytes())
        entry = index["manifests"][0]
        ref = str(entry.get("annotations", {}).get("org.opencontainers.image.ref.name", ""))
        manifest_hex = str(entry["digest"]).removeprefix("sha256:")
        manifest = json.loads((layout / "blobs" / "sha256" / manifest_hex).read_bytes())
        image_id = str(manifest["config"]["digest"]).removeprefix("sha256:")
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InstallError(f"{component}: the staged OCI image in {layout} is unreadable") from exc
    if not ref:
        ref = f"localhost/appliance/{component}:{version}"
    return Image(component, version, ref, image_id, layout)


def _stage_image(site: SiteDir, layout: Path, index_target: TargetFile) -> None:
    """An OCI layout folder holding exactly the blobs this image's manifest names."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    index_path = site.blob(_sha(index_target))
    os.link(index_path, layout / "index.json")
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}\n', encoding="utf-8")
    try:
        index = json.loads(index_path.read_bytes())
        manifest_hex = str(index["manifests"][0]["digest"]).removeprefix("sha256:")
        manifest = json.loads(site.blob(manifest_hex).read_bytes())
        needed = [manifest_hex, str(manifest["config"]["digest"]).removeprefix("sha256:")]
        needed += [str(layer["digest"]).removeprefix("sha256:") for layer in manifest["layers"]]
        for sha in needed:
            os.link(site.blob(sha), blobs / sha)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InstallError(
            f"{layout.name}: its OCI image in the site store is incomplete ({exc})",
            hint="rerun the install: the import step fetches what is missing from the media",
        ) from exc


def _sha(target: TargetFile) -> str:
    return str((target.hashes or {})["sha256"])


def _import_one(
    reader: MediaReader,
    target: TargetFile,
    dest: Path,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Copy one target (or the parts it is stored as) into ``dest``, hashing as it goes."""
    parts = (target.custom or {}).get("parts")
    sources = [str(sha) for sha in parts] if isinstance(parts, list) and parts else [_sha(target)]
    tmp = dest.with_name(f".{dest.name}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for sha in sources:
                with reader.open(blob_path(sha)) as handle:
                    while chunk := handle.read(_BLOCK):
                        digest.update(chunk)
                        out.write(chunk)
                        if on_progress is not None:
                            on_progress(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    except MediaError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InstallError(
            f"copying {target.path} into the site store {dest.parent} failed: {exc.strerror}",
            hint="check the media and free space, then rerun: finished files are kept",
        ) from exc
    found = digest.hexdigest()
    if found != _sha(target):
        tmp.unlink(missing_ok=True)
        raise DigestMismatchError(
            f"{target.path} changed on {reader.description} after it was verified: expected "
            f"sha256 {_sha(target)}, read {found}"
        )
    os.chmod(tmp, 0o444)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
