"""Known vulnerabilities of a bundle's packages, from an OSV database file, offline.

The site carries in OSV's export (the ``all.zip`` of an ecosystem, several of them
unpacked into one folder, or single advisories as ``.json``) and matches every package the
image SBOMs list: PyPI packages by normalised name, Debian packages by their source
package (advisories name those), Go modules by path. A package is affected when its
version is listed in an advisory's ``versions`` or falls in one of its ``ECOSYSTEM`` or
``SEMVER`` ranges, each version compared the way its ecosystem orders versions.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from appliance.errors import ApplianceError
from appliance.sbom import ListedPackage, wheel_key

__all__ = [
    "Finding",
    "OsvDatabase",
    "OsvError",
    "debian_compare",
    "load_osv",
    "pypi_compare",
    "semver_compare",
]

#: The SBOM's ecosystems and the OSV ecosystem names that cover them.
_ECOSYSTEMS = {"pypi": "PyPI", "deb": "Debian", "golang": "Go"}


class OsvError(ApplianceError):
    """The vulnerability database file cannot be read."""


@dataclass(frozen=True)
class Finding:
    """A package an advisory says is affected."""

    image: str
    ecosystem: str
    package: str
    version: str
    advisory: str
    aliases: tuple[str, ...]
    summary: str
    fixed: tuple[str, ...]


@dataclass
class OsvDatabase:
    """Advisories by (OSV ecosystem, normalised package name)."""

    advisories: int
    by_package: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]]

    def affecting(self, image: str, package: ListedPackage) -> Iterator[Finding]:
        """The advisories affecting ``package`` of ``image``."""
        ecosystem = _ECOSYSTEMS.get(package.ecosystem)
        if ecosystem is None:
            return
        name = (package.deb_source or package.name) if package.ecosystem == "deb" else package.name
        for advisory, affected in self.by_package.get((ecosystem, _normal(ecosystem, name)), []):
            if _affects(affected, package.version, _COMPARE[ecosystem]):
                yield Finding(
                    image,
                    package.ecosystem,
                    package.name,
                    package.version,
                    str(advisory.get("id", "?")),
                    tuple(str(a) for a in advisory.get("aliases") or []),
                    str(advisory.get("summary") or advisory.get("details", "")[:120]),
                    _fixed(affected),
                )


def load_osv(path: Path) -> OsvDatabase:
    """Read an OSV export: a .zip of advisories, a folder of them, or one .json file."""
    by_package: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    count = 0
    for source, advisory in _advisories(path):
        if not isinstance(advisory, dict) or "id" not in advisory:
            raise OsvError(f"{source} is not an OSV advisory (no id)", hint=_HINT)
        count += 1
        for affected in advisory.get("affected") or []:
            package = affected.get("package") or {}
            ecosystem = str(package.get("ecosystem", "")).split(":")[0]  # Debian:12 → Debian
            if ecosystem in _COMPARE and package.get("name"):
                key = (ecosystem, _normal(ecosystem, str(package["name"])))
                by_package.setdefault(key, []).append((advisory, affected))
    return OsvDatabase(count, by_package)


_HINT = "use OSV's export (an ecosystem's all.zip, a folder of .json advisories, or one)"


def _advisories(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        if path.is_dir():
            for item in sorted(path.rglob("*.json")):
                yield str(item), json.loads(item.read_bytes())
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in sorted(archive.namelist()):
                    if name.endswith(".json"):
                        yield f"{path}:{name}", json.loads(archive.read(name))
        else:
            data = json.loads(path.read_bytes())
            for advisory in data if isinstance(data, list) else [data]:
                yield str(path), advisory
    except FileNotFoundError:
        raise OsvError(f"{path} does not exist", hint=_HINT) from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise OsvError(f"{path} cannot be read as an OSV database: {exc}", hint=_HINT) from exc


def _normal(ecosystem: str, name: str) -> str:
    return wheel_key(name, "")[0] if ecosystem == "PyPI" else name


def _fixed(affected: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        str(event["fixed"])
        for span in affected.get("ranges") or []
        for event in span.get("events") or []
        if "fixed" in event
    )


def _affects(affected: dict[str, Any], version: str, compare: Callable[[str, str], int]) -> bool:
    if version in (affected.get("versions") or []):
        return True
    for span in affected.get("ranges") or []:
        if span.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue  # GIT ranges name commits, which a package version cannot be placed in
        introduced: str | None = None
        for event in span.get("events") or []:
            if "introduced" in event:
                introduced = str(event["introduced"])
                continue
            if introduced is None:
                continue
            if _at_or_after(version, introduced, compare):
                if "fixed" in event and compare(version, str(event["fixed"])) < 0:
                    return True
                if "last_affected" in event and compare(version, str(event["last_affected"])) <= 0:
                    return True
                if "limit" in event and compare(version, str(event["limit"])) < 0:
                    return True
            introduced = None
        if introduced is not None and _at_or_after(version, introduced, compare):
            return True  # introduced and never fixed
    return False


def _at_or_after(version: str, introduced: str, compare: Callable[[str, str], int]) -> bool:
    return introduced == "0" or compare(version, introduced) >= 0


def pypi_compare(a: str, b: str) -> int:
    """PEP 440 order (text order for a version PEP 440 cannot read)."""
    try:
        left, right = Version(a), Version(b)
    except InvalidVersion:
        return (a > b) - (a < b)
    return (left > right) - (left < right)


_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$")


def semver_compare(a: str, b: str) -> int:
    """Semantic Versioning 2.0 order (Go modules; ``v`` prefix and build metadata ignored)."""
    left, right = _semver_key(a), _semver_key(b)
    return (left > right) - (left < right)


def _semver_key(version: str) -> tuple[Any, ...]:
    match = _SEMVER.match(version)
    if match is None:
        return ((0, 0, 0), 0, ())
    core = tuple(int(part or 0) for part in match.group(1, 2, 3))
    pre = match.group(4)
    if pre is None:
        return (core, 1, ())  # a release sorts after its pre-releases
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (core, 0, ids)


def debian_compare(a: str, b: str) -> int:
    """dpkg's order of Debian versions: epoch, then upstream version, then revision."""
    left, right = _debian_parts(a), _debian_parts(b)
    if left[0] != right[0]:
        return (left[0] > right[0]) - (left[0] < right[0])
    for x, y in zip(left[1:], right[1:], strict=True):
        result = _debian_fragment(x, y)
        if result:
            return result
    return 0


def _debian_parts(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
    return int(epoch or 0), upstream, revision


def _debian_order(char: str) -> int:
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _debian_fragment(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternate non-digit runs (by _debian_order) and digit runs."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            x = _debian_order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            y = _debian_order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if x != y:
                return (x > y) - (x < y)
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first = 0
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first:
                first = (a[i] > b[j]) - (a[i] < b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first:
            return first
    return 0


_COMPARE: dict[str, Callable[[str, str], int]] = {
    "PyPI": pypi_compare,
    "Debian": debian_compare,
    "Go": semver_compare,
}
