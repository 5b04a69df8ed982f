"""OpenZiti programs as supplied upstream artifacts.

A vendor gets ``ziti`` and ``llm-gateway`` in one of three ways, and every Go component
takes each of them:

* built here from the Go module (``appliance.components.gobuild``);
* a prebuilt program: the upstream release archive or a bare executable, pinned by sha256
  in the definition (``supplied:``) or given on the command line (``--source NAME=PATH``),
  or found in the supplied-programs folder (``--supplied DIR``); it goes into the same
  FROM-scratch image a module build gives;
* the upstream image by digest (``docker://REPO@sha256:…``) or as an OCI archive, shipped
  as it is, with its program read out of it for the lock.

Whatever the source, the program is inspected and checked against the definition
(``appliance.components.program``) before anything is saved.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appliance.components import podman
from appliance.components.images import BuiltImage, FipsPosture, build_go_image, image_tag
from appliance.components.program import (
    check_program,
    fips_from_settings,
    inspect_program,
    sha256_file,
)
from appliance.components.source import copy_image
from appliance.definition import (
    IMAGE_TRANSPORTS,
    Component,
    Definition,
    GoBinaryBuild,
    SuppliedProgram,
)
from appliance.errors import BuildError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "OPENZITI_PROGRAMS",
    "Origin",
    "build_supplied_image",
    "describe_supplied",
    "find_in_folder",
    "supplied_for",
]

#: Release archives a supplied folder or ``--source`` may hold.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar")

#: The OpenZiti programs a site's overlay needs, by the name the supplied folder holds them.
OPENZITI_PROGRAMS = ("ziti", "llm-gateway")

#: The largest program we extract from an archive (ziti is about 100 MiB).
_MAX_PROGRAM_BYTES = 1 << 30


@dataclass(frozen=True)
class Origin:
    """Where a supplied program comes from, and who said so."""

    program: SuppliedProgram
    given_by: str  # "the definition", "--source", "the supplied folder DIR"


def supplied_for(
    definition: Definition,
    component: Component,
    spec: GoBinaryBuild,
    *,
    override: str | None,
    folder: Path | None,
) -> Origin | None:
    """The supplied program for ``component``, or None to build it from its module.

    ``--source`` wins over the definition's ``supplied:``, which wins over the folder.
    A file named in the definition is resolved inside its root; one on the command line
    or in the folder is taken as given.
    """
    if override is not None:
        reference = override
        if not reference.startswith(IMAGE_TRANSPORTS):
            reference = str(Path(reference).expanduser().resolve())
        return Origin(SuppliedProgram(reference=reference), "--source")
    if spec.supplied is not None:
        program = spec.supplied
        if not program.is_image:
            resolved = definition.resolve(program.reference, what=f"{component.name} supplied")
            program = program.model_copy(update={"reference": str(resolved)})
        return Origin(program, "the definition")
    if folder is not None:
        found = find_in_folder(folder, spec.binary)
        if found is not None:
            return Origin(SuppliedProgram(reference=str(found)), f"the supplied folder {folder}")
    return None


def find_in_folder(folder: Path, binary: str) -> Path | None:
    """``BINARY`` itself, or one release archive ``BINARY[-_]…`` in ``folder``."""
    if not folder.is_dir():
        return None
    exact = folder / binary
    if exact.is_file():
        return exact
    archives = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.name.startswith((f"{binary}-", f"{binary}_"))
        and p.name.endswith(ARCHIVE_SUFFIXES)
    )
    if len(archives) > 1:
        raise BuildError(
            f"the supplied folder {folder} holds several archives of {binary}: "
            f"{', '.join(a.name for a in archives)}; expected one",
            hint="keep only the release to ship",
        )
    return archives[0] if archives else None


def supplied_executable(folder: Path, binary: str, scratch: Path) -> Path | None:
    """The supplied program ``binary`` as an executable (taken out of its release archive
    into ``scratch`` if need be), or None when the folder does not supply it."""
    found = find_in_folder(folder, binary)
    if found is None or not tarfile.is_tarfile(found):
        return found
    scratch.mkdir(parents=True, exist_ok=True)
    return _extract_member(found, binary, scratch)


def describe_supplied(folder: Path) -> str:
    """One line: which OpenZiti programs ``folder`` supplies, or what to put there."""
    found = {name: find_in_folder(folder, name) for name in OPENZITI_PROGRAMS}
    missing = [name for name, path in found.items() if path is None]
    if not missing:
        named = ", ".join(f"{path.name}" for path in found.values() if path is not None)
        return (
            f"OpenZiti: supplied in {folder} ({named}): its images are built and the overlay "
            "tests run"
        )
    return (
        f"OpenZiti: no {' or '.join(missing)} supplied in {folder} (set $APPLIANCE_SUPPLIED "
        "or put them there; docs/components.md): its images are not built and the "
        "overlay tests are skipped"
    )


def build_supplied_image(component: Component, spec: GoBinaryBuild, origin: Origin) -> BuiltImage:
    """The component's image from a supplied program, checked against the definition."""
    program = origin.program
    if program.is_image:
        return _from_image(component, spec, origin)
    path = Path(program.reference)
    if not path.is_file():
        raise BuildError(
            f"{component.name}: the supplied program {path} (from {origin.given_by}) does "
            "not exist or is not a file",
            hint="give the path of the upstream release archive or of the executable",
        )
    digest = sha256_file(path)
    if program.sha256 is not None and digest != program.sha256:
        raise BuildError(
            f"{component.name}: expected {path} to have sha256 {program.sha256} (pinned in "
            f"{origin.given_by}), found {digest}",
            hint="the file is not the release that was pinned; fetch it again or re-pin",
        )
    with tempfile.TemporaryDirectory(prefix="appliance-supplied-") as tmp:
        if tarfile.is_tarfile(path):
            binary = _extract_member(path, spec.binary, Path(tmp))
            how = f"release archive {path.name} (sha256:{digest}), member {spec.binary}"
        elif _is_elf(path):
            binary = path
            how = f"prebuilt executable {path.name}"
        else:
            raise BuildError(
                f"{component.name}: {path} is neither a Linux executable nor a tar archive",
                hint="supply the upstream release archive (.tar.gz) or the executable",
            )
        facts = inspect_program(binary, spec)
        source = f"{how}, from {origin.given_by}"
        check_program(component.name, spec, facts, source)
        return build_go_image(component, spec, binary, facts, source=f"supplied: {how}")


def _from_image(component: Component, spec: GoBinaryBuild, origin: Origin) -> BuiltImage:
    reference = origin.program.reference
    if reference.startswith("docker://") and "@sha256:" not in reference:
        raise BuildError(
            f"{component.name}: the upstream image {reference} (from {origin.given_by}) is "
            "named by tag only; expected it by digest (docker://REPO@sha256:…)",
            hint="a tag can move; pin the digest the vendor verified",
        )
    tag = image_tag(component)
    upstream = copy_image(component.name, reference, tag)
    with tempfile.TemporaryDirectory(prefix="appliance-supplied-") as tmp:
        binary = _copy_out(tag, spec.image_program_path, Path(tmp))
        facts = inspect_program(binary, spec)
    source = f"upstream image {reference} ({upstream}), from {origin.given_by}"
    check_program(component.name, spec, facts, source)
    built, why = fips_from_settings(facts, _image_godebug(tag))
    return BuiltImage(
        tag,
        podman.image_id(tag),
        f"supplied: upstream image {reference.split('@')[0]}@{upstream}",
        FipsPosture(built, why),
        program=facts,
        program_path=spec.image_program_path,
    )


def _extract_member(archive: Path, binary: str, dest: Path) -> Path:
    """Extract the one regular file named ``binary`` from ``archive``, nothing else."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if Path(m.name).name == binary]
        files = [m for m in members if m.isfile()]
        if len(files) != 1 or len(members) != 1:
            found = ", ".join(f"{m.name} ({_kind(m)})" for m in members) or "none"
            raise BuildError(
                f"expected the archive {archive.name} to hold exactly one regular file named "
                f"{binary}, found {found}"
            )
        member = files[0]
        if member.size > _MAX_PROGRAM_BYTES:
            raise BuildError(
                f"{archive.name}: {member.name} is {member.size} bytes; expected at most "
                f"{_MAX_PROGRAM_BYTES}"
            )
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - isfile() members always have data
            raise BuildError(f"{archive.name}: cannot read {member.name}")
        out = dest / binary
        with source, out.open("wb") as handle:
            shutil.copyfileobj(source, handle)
    out.chmod(0o755)
    return out


def _copy_out(tag: str, path: str, dest: Path) -> Path:
    """Copy one file out of an image without running it."""
    created = podman.create_container(tag)
    try:
        out = dest / Path(path).name
        podman.copy_from_container(created, path, out)
    finally:
        podman.remove_container(created)
    if not out.is_file():
        raise BuildError(f"{tag} has no program at {path}; set `program_path` in the definition")
    return out


def _image_godebug(tag: str) -> str | None:
    for item in podman.image_env(tag):
        key, _, value = item.partition("=")
        if key == "GODEBUG":
            return f"GODEBUG={value}"
    return None


def _is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "a folder"
    if member.issym() or member.islnk():
        return "a link"
    return "a file" if member.isfile() else "a special file"
