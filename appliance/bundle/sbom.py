"""A CycloneDX SBOM of everything a bundle holds, made with cyclonedx-python-lib."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

__all__ = ["SbomItem", "make_sbom", "summarise_sbom"]

ItemKind = Literal["image", "files", "wheel", "ansible"]

_TYPES: dict[ItemKind, ComponentType] = {
    "image": ComponentType.CONTAINER,
    "files": ComponentType.DATA,
    "wheel": ComponentType.LIBRARY,
    "ansible": ComponentType.FILE,
}


@dataclass(frozen=True)
class SbomItem:
    """One thing in the bundle, as the SBOM lists it."""

    kind: ItemKind
    name: str
    version: str
    sha256: str
    source: str = ""


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
        part = Component(
            name=item.name,
            version=item.version,
            type=_TYPES[item.kind],
            purl=purl,
            bom_ref=f"{item.kind}:{item.name}@{item.version}:{item.sha256[:12]}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=item.sha256)],
            properties=properties,
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
