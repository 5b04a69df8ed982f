"""The bundle definition (``bundles/*.yaml``): what a bundle holds and how each part is made.

Minimum schema, so that any tool can build a bundle from plain files::

    name: lab
    version: 2026.11.0
    root: ..                      # optional: paths below are relative to this directory,
                                  # itself relative to the definition file (default ".")
    components:
      - name: ziti-controller
        version: 2.0.3
        image: build/components/ziti-controller.oci.tar
        build: {kind: go-binary, ...}     # optional: how `appliance components build` makes it
      - name: tiny-model
        version: "1"
        files:
          - path: build/models/tiny

Every path must stay inside ``root``: a definition cannot name ``/etc/shadow`` or climb out
with ``..``. Versions and upstream sources are pinned here, never in code.

The component builds, the bundle builder and the lab all read definitions, so the model
sits below all of them (it imports nothing of the appliance but its errors).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from appliance.errors import DefinitionError

__all__ = [
    "IMAGE_TRANSPORTS",
    "ApplianceWheelBuild",
    "BuildSpec",
    "Component",
    "DebianBase",
    "Definition",
    "FileEntry",
    "GoBinaryBuild",
    "ImageSourceBuild",
    "InstallerSpec",
    "PythonVenvBuild",
    "SuppliedProgram",
    "TinyLlamaBuild",
    "load_definition",
]

_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DebianBase(_Strict):
    """A Debian root filesystem made with debootstrap, the base of our Python images."""

    suite: str = "bookworm"
    variant: Literal["minbase", "buildd"] = "minbase"
    include: list[str] = Field(default_factory=list)


class _ImageBuild(_Strict):
    entrypoint: list[str] = Field(default_factory=list)
    cmd: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)


#: Skopeo transports an upstream image may be named with.
IMAGE_TRANSPORTS = ("docker://", "oci-archive:", "oci:", "docker-archive:")


class SuppliedProgram(_Strict):
    """A Go program made elsewhere and handed to the build, instead of building the module.

    ``reference`` is either a file under the definition's root (the upstream release
    archive, ``.tar.gz``/``.tgz``/``.tar``, or a bare executable), pinned by ``sha256``,
    or the upstream image: ``docker://REPO@sha256:…`` (by digest, never by tag alone) or
    ``oci-archive:PATH``.
    """

    reference: str
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the archive or executable"
    )

    @property
    def is_image(self) -> bool:
        """Whether the reference names an image rather than a file."""
        return self.reference.startswith(IMAGE_TRANSPORTS)


class GoBinaryBuild(_ImageBuild):
    """A static Go program in a FROM-scratch image: built from its module at a pinned
    version, or supplied prebuilt (``supplied:``, or ``--source`` on the command line)."""

    kind: Literal["go-binary"]
    module: str
    version: str = Field(description="the pin: module version, and what the program prints")
    package: str = Field(description="package path inside the module, e.g. ./ziti")
    binary: str
    ldflags: list[str] = Field(default_factory=list)
    fips140: str | None = Field(
        default=None, description="GOFIPS140 setting, e.g. v1.0.0 (Go Cryptographic Module)"
    )
    cgo: bool = Field(default=False, description="expected CGO_ENABLED (static: false)")
    trimpath: bool = Field(default=True, description="expected a -trimpath build")
    version_args: list[str] | None = Field(
        default_factory=lambda: ["version"],
        description="arguments that make the program print its version; null: read the "
        "main module's version from its build information",
    )
    program_path: str | None = Field(
        default=None,
        description="where the program lives inside an upstream image "
        "[default: /usr/local/bin/BINARY]",
    )
    supplied: SuppliedProgram | None = None
    shares_binary_with: str | None = Field(
        default=None, description="another component whose binary this image reuses"
    )

    @property
    def image_program_path(self) -> str:
        """The program's path inside the image."""
        return self.program_path or f"/usr/local/bin/{self.binary}"


class PythonVenvBuild(_ImageBuild):
    """Python requirements installed into a virtualenv on the Debian base, offline."""

    kind: Literal["python-venv"]
    requirements: list[str]
    remove: list[str] = Field(
        default_factory=list, description="distributions uninstalled after the install"
    )
    venv: str = "/opt/venv"


class ApplianceWheelBuild(_ImageBuild):
    """Our own package, installed from its wheel on the Debian base."""

    kind: Literal["appliance-wheel"]
    extras: list[str] = Field(default_factory=list)
    venv: str = "/opt/appliance"


class ImageSourceBuild(_Strict):
    """An image made elsewhere: an OCI archive or a registry reference (skopeo syntax)."""

    kind: Literal["image"]
    reference: str = Field(
        description="oci-archive:PATH or docker://REGISTRY/NAME:TAG[@sha256:...]"
    )
    digest: str | None = Field(default=None, description="expected manifest digest")
    tls_verify: bool = True


class TinyLlamaBuild(_Strict):
    """A tiny Llama model with random weights and a locally trained tokenizer (for the lab)."""

    kind: Literal["tiny-llama"]
    runner: str = Field(description="component whose image has torch and transformers")
    hidden_size: int = 128
    intermediate_size: int = 256
    layers: int = 2
    heads: int = 2
    vocab_size: int = 512
    max_position_embeddings: int = 512
    seed: int = 0


BuildSpec = Annotated[
    GoBinaryBuild | PythonVenvBuild | ApplianceWheelBuild | ImageSourceBuild | TinyLlamaBuild,
    Field(discriminator="kind"),
]


class InstallerSpec(_Strict):
    """What the media carries for the installer itself, beside our own wheel."""

    requirements: list[str] = Field(
        default_factory=list, description="wheels the installer needs (ansible-core, …)"
    )
    content: list[str] = Field(
        default_factory=list, description="folders of Ansible content (roles/, installer/)"
    )


class FileEntry(_Strict):
    """A file or directory carried by a component."""

    path: str


class Component(_Strict):
    """One named, versioned part of a bundle: an image, files, or both."""

    name: str = Field(pattern=_NAME)
    version: str = Field(min_length=1)
    image: str | None = None
    files: list[FileEntry] = Field(default_factory=list)
    build: BuildSpec | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # YAML reads `version: 1` as an int; a version is always text.
        return str(value) if isinstance(value, int | float) else value


class Definition(_Strict):
    """A parsed bundle definition with every path resolved and checked."""

    name: str = Field(pattern=_NAME)
    version: str = Field(min_length=1)
    root: str = "."
    base: DebianBase | None = None
    installer: InstallerSpec = Field(default_factory=InstallerSpec)
    components: list[Component] = Field(min_length=1)

    #: Directory of the definition file, set by load_definition.
    source_dir: Path = Field(default=Path(), exclude=True)

    @field_validator("components")
    @classmethod
    def _unique_names(cls, value: list[Component]) -> list[Component]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"component names must be unique; repeated: {', '.join(dupes)}")
        return value

    @property
    def root_dir(self) -> Path:
        """The directory every path in the definition is relative to."""
        return (self.source_dir / self.root).resolve()

    def resolve(self, relative: str, *, what: str) -> Path:
        """Resolve a path named in the definition, refusing anything outside ``root``."""
        pure = PurePosixPath(relative)
        if pure.is_absolute() or relative.startswith("~"):
            raise DefinitionError(
                f"{what}: path {relative!r} is absolute; expected a path relative to "
                f"{self.root_dir}"
            )
        if ".." in pure.parts:
            raise DefinitionError(f"{what}: path {relative!r} climbs out with '..'")
        resolved = (self.root_dir / pure).resolve()
        if not resolved.is_relative_to(self.root_dir):
            raise DefinitionError(
                f"{what}: path {relative!r} resolves to {resolved}, outside {self.root_dir} "
                "(a symbolic link points out of the definition's root)"
            )
        return resolved

    def component(self, name: str) -> Component:
        """Return the component called ``name``."""
        for comp in self.components:
            if comp.name == name:
                return comp
        known = ", ".join(c.name for c in self.components)
        raise DefinitionError(f"no component named {name!r} in {self.name}; it has: {known}")


def load_definition(path: Path) -> Definition:
    """Read and validate a definition file; every error names the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DefinitionError(f"bundle definition {path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DefinitionError(f"cannot read bundle definition {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise DefinitionError(f"{path}: expected a YAML mapping at the top level")
    try:
        definition = Definition.model_validate({**raw, "source_dir": path.parent.resolve()})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise DefinitionError(f"{path}: {problems}") from None
    # Resolve every path now so an unsafe one fails before any work starts.
    if not definition.root_dir.is_dir():
        raise DefinitionError(f"{path}: root {definition.root!r} is not a directory")
    for comp in definition.components:
        if comp.image is not None:
            definition.resolve(comp.image, what=f"{path}: component {comp.name} image")
        for entry in comp.files:
            definition.resolve(entry.path, what=f"{path}: component {comp.name} file")
        supplied = getattr(comp.build, "supplied", None)
        if supplied is not None and not supplied.is_image:
            definition.resolve(supplied.reference, what=f"{path}: component {comp.name} supplied")
    for folder in definition.installer.content:
        definition.resolve(folder, what=f"{path}: installer content")
    return definition
