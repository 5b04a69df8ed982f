"""The few podman operations the component builder needs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from appliance._process import run
from appliance.errors import CommandError

__all__ = [
    "build_image",
    "containerfile_json",
    "copy_from_container",
    "create_container",
    "image_env",
    "image_exists",
    "image_from_rootfs",
    "image_id",
    "image_size",
    "image_tags",
    "remove_container",
    "remove_image",
    "save_oci_archive",
]


def image_exists(ref: str) -> bool:
    """True when ``ref`` is in local podman storage."""
    try:
        run(["podman", "image", "exists", ref])
    except CommandError:
        return False
    return True


def image_id(ref: str) -> str:
    """The local image ID (sha256 of its config) of ``ref``."""
    out = run(["podman", "image", "inspect", "--format", "{{.Id}}", ref])
    return out.strip().splitlines()[-1]


def build_image(
    context: Path,
    tag: str,
    *,
    volumes: list[tuple[Path, str]] | None = None,
    no_cache: bool = False,
) -> str:
    """Build ``context/Containerfile`` as ``tag`` and return the image ID.

    ``--timestamp 0`` fixes the creation time and every file's mtime so the same inputs
    give the same image digest; ``--network none`` proves the build needs nothing outside.
    """
    argv: list[str | os.PathLike[str]] = [
        "podman",
        "build",
        "--timestamp",
        "0",
        "--network",
        "none",
        "--pull=never",
        "-f",
        context / "Containerfile",
        "-t",
        tag,
    ]
    for host, target in volumes or []:
        argv += ["--volume", f"{host}:{target}:ro"]
    if no_cache:
        argv.append("--no-cache")
    argv.append(context)
    run(argv)
    return image_id(tag)


def save_oci_archive(ref: str, dest: Path) -> None:
    """``podman save --format oci-archive`` to a temporary name, then rename into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        run(["podman", "save", "--format", "oci-archive", "-o", tmp, ref])
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def image_from_rootfs(tarball: Path, tag: str, env: dict[str, str]) -> str:
    """An image of one layer, the root filesystem ``tarball``; its ID.

    Built (``FROM scratch``, ``ADD``) rather than imported: ``podman import`` stamps the
    image with the time of the import, a build with ``--timestamp 0`` does not, so the same
    tarball gives the same image ID on any day.
    """
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".base-ctx-") as tmp:
        context = Path(tmp)
        try:
            os.link(tarball, context / "rootfs.tar")
        except OSError:
            shutil.copy2(tarball, context / "rootfs.tar")
        lines = ["FROM scratch", "ADD rootfs.tar /"]
        lines += [f"ENV {key}={value}" for key, value in sorted(env.items())]
        (context / "Containerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return build_image(context, tag)


def containerfile_json(values: list[str]) -> str:
    """A Containerfile exec-form list (``["a", "b"]``)."""
    return json.dumps(values)


def create_container(ref: str) -> str:
    """``podman create`` a stopped container of ``ref`` (to copy files out); its ID."""
    return run(["podman", "create", ref]).strip().splitlines()[-1]


def copy_from_container(container: str, path: str, dest: Path) -> None:
    """Copy one file out of a (stopped) container."""
    run(["podman", "cp", f"{container}:{path}", dest])


def remove_container(container: str) -> None:
    """Remove a container; one already gone is fine."""
    run(["podman", "rm", "--force", "--ignore", container])


def image_env(ref: str) -> list[str]:
    """The image's configured environment, ``KEY=VALUE`` each."""
    out = run(["podman", "image", "inspect", "--format", "{{json .Config.Env}}", ref])
    values = json.loads(out.strip().splitlines()[-1] or "null")
    return [str(v) for v in values or []]


def image_tags() -> list[str]:
    """Every tagged image name in local storage (``repository:tag``)."""
    out = run(["podman", "images", "--format", "json"])
    names: list[str] = []
    for image in json.loads(out or "[]"):
        names.extend(str(n) for n in image.get("Names") or [])
    return names


def image_size(ref: str) -> int:
    """The image's size in bytes as podman reports it (layers shared with others included)."""
    out = run(["podman", "image", "inspect", "--format", "{{.Size}}", ref])
    return int(out.strip().splitlines()[-1])


def remove_image(ref: str) -> None:
    """Untag ``ref``; the image goes with its last tag. Refused (CommandError) while a
    container uses it."""
    run(["podman", "rmi", ref])
