"""CycloneDX SBOMs, made with cyclonedx-python-lib: the bundle's (everything it holds) and
each image's (every Python, Debian and Go package inside it), linked from the bundle's.

The one place that defines the SBOMs' form, making and reading them, and the package
record an image's contents are listed with. The component builds (which read an image's
packages and write its SBOM) and the bundle builder (which links them) both use it, so it
sits below both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

__all__ = [
    "ImageSbomRef",
    "ListedPackage",
    "Package",
    "SbomItem",
    "image_sbom_packages",
    "make_image_sbom",
    "make_sbom",
    "summarise_image_sbom",
    "summarise_sbom",
    "wheel_key",
]

ItemKind = Literal["image", "files", "wheel", "ansible"]
Ecosystem = Literal["pypi", "deb", "golang"]

_TYPES: dict[ItemKind, ComponentType] = {
    "image": ComponentType.CONTAINER,
    "files": ComponentType.DATA,
    "wheel": ComponentType.LIBRARY,
    "ansible": ComponentType.FILE,
}


@dataclass(frozen=True)
class Package:
    """One package found in an image."""

    ecosystem: Ecosystem
    name: str
    version: str
    location: str  # where in the image it was read
    licence: str | None = None
    #: The Debian architecture, or the Go main module's program path.
    detail: str = ""
    #: go.sum hash (h1:…) of a Go module, as the build information records it.
    go_sum: str | None = None
    #: The Debian source package (advisories name source packages).
    source: str = ""


def wheel_key(name: str, version: str) -> tuple[str, str]:
    """How a wheel and an installed distribution are matched: normalised name, version."""
    return re.sub(r"[-_.]+", "-", name).lower(), version


@dataclass(frozen=True)
class ImageSbomRef:
    """Where an image's own SBOM lies in the bundle (a target) and its digest."""

    target: str
    sha256: str


@dataclass(frozen=True)
class SbomItem:
    """One thing in the bundle, as the SBOM lists it."""

    kind: ItemKind
    name: str
    version: str
    sha256: str
    source: str = ""
    contents: ImageSbomRef | None = None


def make_sbom(bundle: str, version: str, items: list[SbomItem], created: datetime) -> bytes:
    """CycloneDX 1.6 JSON for ``items``, sorted, with the bundle as the subject."""
    bom = Bom()
    bom.metadata.timestamp = created
    bom.metadata.component = Component(
        name=bundle, version=version, type=ComponentType.APPLICATION, bom_ref=f"bundle:{bundle}"
    )
    parts: list[Component] = []
    for item in sorted(items, key=lambda i: (i.kind, i.name, i.version)):
        purl = (
            PackageURL(type="pypi", name=item.name.lower(), version=item.version)
            if item.kind == "wheel"
            else None
        )
        properties = [Property(name="appliance:kind", value=item.kind)]
        if item.source:
            properties.append(Property(name="appliance:source", value=item.source))
        references = []
        if item.contents is not None:  # the image's own SBOM: every package inside it
            references.append(
                ExternalReference(
                    type=ExternalReferenceType.BOM,
                    url=XsUri(item.contents.target),
                    comment="CycloneDX SBOM of the image's contents, a target of this bundle",
                    hashes=[HashType(alg=HashAlgorithm.SHA_256, content=item.contents.sha256)],
                )
            )
        part = Component(
            name=item.name,
            version=item.version,
            type=_TYPES[item.kind],
            purl=purl,
            bom_ref=f"{item.kind}:{item.name}@{item.version}:{item.sha256[:12]}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=item.sha256)],
            properties=properties,
            external_references=references,
        )
        bom.components.add(part)
        parts.append(part)
    bom.register_dependency(bom.metadata.component, parts)
    output = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(indent=1)
    return output.encode("utf-8")


def summarise_sbom(data: bytes) -> dict[str, int]:
    """Count of SBOM components by appliance kind (image, files, wheel, ansible)."""
    document: Any = json.loads(data)
    counts: dict[str, int] = {}
    for component in document.get("components", []):
        kind = next(
            (
                p.get("value")
                for p in component.get("properties", [])
                if p.get("name") == "appliance:kind"
            ),
            component.get("type", "?"),
        )
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def make_image_sbom(
    name: str,
    version: str,
    packages: list[Package],
    wheel_sha256: dict[tuple[str, str], str],
    created: datetime,
    serial: UUID,
) -> bytes:
    """CycloneDX 1.6 JSON of an image's contents: each package with its purl, licence
    where known, the sha256 of the wheel it was installed from (when the build had it),
    the go.sum hash of a Go module, and where in the image it was read."""
    bom = Bom(serial_number=serial)
    bom.metadata.timestamp = created
    bom.metadata.component = Component(
        name=name, version=version, type=ComponentType.CONTAINER, bom_ref=f"image:{name}"
    )
    licences = LicenseFactory()
    parts: list[Component] = []
    for index, package in enumerate(packages):
        hashes = []
        sha = wheel_sha256.get(wheel_key(package.name, package.version))
        if package.ecosystem == "pypi" and sha:
            hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=sha))
        properties = [
            Property(name="appliance:ecosystem", value=package.ecosystem),
            Property(name="appliance:location", value=package.location),
        ]
        if package.go_sum:
            properties.append(Property(name="appliance:go-sum", value=package.go_sum))
        if package.ecosystem == "golang" and package.detail:
            properties.append(Property(name="appliance:go-program", value=package.detail))
        if package.source:
            properties.append(Property(name="appliance:deb-source", value=package.source))
        part = Component(
            name=package.name,
            version=package.version,
            type=ComponentType.LIBRARY,
            purl=_purl(package),
            bom_ref=f"{package.ecosystem}:{package.name}@{package.version}#{index}",
            hashes=hashes,
            licenses=[licences.make_from_string(package.licence)] if package.licence else [],
            properties=properties,
        )
        bom.components.add(part)
        parts.append(part)
    bom.register_dependency(bom.metadata.component, parts)
    output = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(indent=1)
    return output.encode("utf-8")


def _purl(package: Package) -> PackageURL:
    if package.ecosystem == "pypi":
        return PackageURL(type="pypi", name=wheel_key(package.name, "")[0], version=package.version)
    if package.ecosystem == "deb":
        qualifiers = {"arch": package.detail} if package.detail else {}
        return PackageURL(
            type="deb",
            namespace="debian",
            name=package.name,
            version=package.version,
            qualifiers=qualifiers,
        )
    namespace, _, last = package.name.rpartition("/")
    return PackageURL(
        type="golang", namespace=namespace or None, name=last, version=package.version
    )


@dataclass(frozen=True)
class ListedPackage:
    """A package as an image SBOM lists it."""

    ecosystem: str
    name: str
    version: str
    deb_source: str = ""


def image_sbom_packages(data: bytes) -> list[ListedPackage]:
    """Every package an image SBOM lists."""
    document: Any = json.loads(data)
    found = []
    for component in document.get("components", []):
        properties = {p.get("name"): p.get("value") for p in component.get("properties", [])}
        found.append(
            ListedPackage(
                str(properties.get("appliance:ecosystem", "?")),
                str(component["name"]),
                str(component.get("version", "")),
                str(properties.get("appliance:deb-source", "")),
            )
        )
    return found


def summarise_image_sbom(data: bytes) -> dict[str, int]:
    """Count of an image SBOM's packages by ecosystem (pypi, deb, golang)."""
    counts: dict[str, int] = {}
    for package in image_sbom_packages(data):
        counts[package.ecosystem] = counts.get(package.ecosystem, 0) + 1
    return counts
