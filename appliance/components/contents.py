"""What an image really holds: its Python, Debian and Go packages, read from its files.

The image is mounted read-only (``podman image mount``) and read from here: nothing in it
runs, so scratch images, imported upstream images and Python images are read the same way.
- Debian packages from ``/var/lib/dpkg/status`` (installed ones), with the licence of a
  machine-readable ``/usr/share/doc/PKG/copyright``.
- Python packages from every ``*.dist-info`` under a site-packages or dist-packages folder,
  except Debian's own ``/usr/lib/python3/dist-packages`` (those are Debian packages).
- Go programs from the build information every Go binary carries (the module, its
  dependencies with their go.sum hashes), in the executable folders.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from email.parser import HeaderParser
from pathlib import Path

from appliance._process import run
from appliance.components.program import parse_build_info
from appliance.sbom import Package

__all__ = ["installed_debian", "mounted_image", "read_root"]

_DEBIAN_PYTHON = "usr/lib/python3/dist-packages"
_BIN_DIRS = ("usr/local/bin", "usr/local/sbin", "usr/bin", "usr/sbin", "bin", "sbin")


@contextlib.contextmanager
def mounted_image(tag: str) -> Iterator[Path]:
    """The image's root filesystem, mounted read-only for the ``with`` block (root only)."""
    root = Path(run(["podman", "image", "mount", tag]).strip().splitlines()[-1])
    try:
        yield root
    finally:
        run(["podman", "image", "unmount", tag])


def read_root(root: Path) -> list[Package]:
    """Every Debian, Python and Go package under the root filesystem ``root``, sorted."""
    found = [*_debian(root), *_python(root), *_go(root)]
    return sorted(found, key=lambda p: (p.ecosystem, p.name.lower(), p.version, p.location))


def installed_debian(status: str) -> list[dict[str, str]]:
    """The installed packages of a dpkg status file, each paragraph's fields."""
    found = []
    for paragraph in status.split("\n\n"):
        fields = _fields(paragraph)
        if fields.get("Package") and fields.get("Status", "").endswith(" installed"):
            found.append(fields)
    return found


def _debian(root: Path) -> Iterator[Package]:
    status = root / "var/lib/dpkg/status"
    if not status.is_file():
        return
    for fields in installed_debian(status.read_text(encoding="utf-8", errors="replace")):
        name = fields["Package"]
        yield Package(
            "deb",
            name,
            fields.get("Version", ""),
            "var/lib/dpkg/status",
            _debian_licence(root / "usr/share/doc" / name / "copyright"),
            fields.get("Architecture", ""),
            # "Source: name (version)" when the source's version differs; absent when the
            # source is named like the package.
            source=fields.get("Source", name).split(" ")[0],
        )


def _fields(paragraph: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in paragraph.splitlines():
        if line and not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _debian_licence(copyright_file: Path) -> str | None:
    """The licence of the ``Files: *`` paragraph of a machine-readable copyright file."""
    try:
        text = copyright_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not text.startswith("Format:"):
        return None  # free-form: nothing a machine can say for sure
    for paragraph in text.split("\n\n"):
        fields = _fields(paragraph)
        if fields.get("Files") == "*" and fields.get("License"):
            return fields["License"]
    return None


def _python(root: Path) -> Iterator[Package]:
    for folder in ("usr", "opt"):
        base = root / folder
        if not base.is_dir():
            continue
        for dirpath, dirnames, _files in os.walk(base):
            here = Path(dirpath)
            if here.name not in ("site-packages", "dist-packages"):
                continue
            dirnames.clear()  # packages do not nest their metadata deeper
            if here.relative_to(root).as_posix() == _DEBIAN_PYTHON:
                continue
            for info in sorted(here.glob("*.dist-info")):
                package = _distribution(root, info)
                if package is not None:
                    yield package


def _distribution(root: Path, info: Path) -> Package | None:
    try:
        metadata = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
    except OSError:
        return None
    name, version = metadata.get("Name"), metadata.get("Version")
    if not name or not version:
        return None
    return Package(
        "pypi",
        str(name),
        str(version),
        info.relative_to(root).as_posix(),
        _python_licence(metadata),
    )


def _python_licence(metadata: object) -> str | None:
    get = metadata.get  # type: ignore[attr-defined]
    get_all = metadata.get_all  # type: ignore[attr-defined]
    expression = get("License-Expression")
    if expression:
        return str(expression)
    text = get("License")
    if text and "\n" not in str(text) and len(str(text)) <= 80 and str(text) != "UNKNOWN":
        return str(text)
    classifiers = [str(c) for c in get_all("Classifier") or [] if str(c).startswith("License ::")]
    if classifiers:
        return " / ".join(c.split(" :: ")[-1] for c in classifiers)
    return None


def _go(root: Path) -> Iterator[Package]:
    seen: set[tuple[int, int]] = set()
    for folder in _BIN_DIRS:
        base = root / folder
        if not base.is_dir() or base.is_symlink():
            continue
        for path in sorted(base.iterdir()):
            try:
                stat = path.stat()
            except OSError:
                continue
            if not path.is_file() or not stat.st_mode & 0o111:
                continue
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            info = parse_build_info(path)
            if info is None:
                continue
            location = path.relative_to(root).as_posix()
            for module in info.modules:
                yield Package(
                    "golang",
                    module.path,
                    module.version,
                    location,
                    detail=info.path if module.path == info.main_module else "",
                    go_sum=module.go_sum,
                )
