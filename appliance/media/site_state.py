"""What a site trusts and runs: the one place that defines the site-state folder.

    DIR/root.json         the root metadata the site trusts (the newest it has verified)
    DIR/installed.json    {"bundle", "version", "targets_sha256", "versions": {role: n}}

The installer writes it after a successful install; `bundle verify --site-state DIR`
reads it to refuse rollbacks, replays and metadata that does not chain to this root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from appliance._fsutil import atomic_write_bytes, atomic_write_json
from appliance.errors import MediaError

__all__ = ["Installed", "SiteState", "read_site_state", "record_installed"]


@dataclass(frozen=True)
class Installed:
    """The bundle a site runs."""

    bundle: str
    version: str
    targets_sha256: str
    versions: dict[str, int]


@dataclass(frozen=True)
class SiteState:
    """A site's trust anchor and, once installed, what it runs."""

    root: bytes
    installed: Installed | None


def read_site_state(folder: Path) -> SiteState:
    """Read the folder; a missing trusted root is an error, a missing install is not."""
    try:
        root = (folder / "root.json").read_bytes()
    except OSError as exc:
        raise MediaError(
            f"site state {folder} has no trusted root (root.json): {exc.strerror}",
            hint="pass the site-state folder the installer keeps",
        ) from exc
    installed_path = folder / "installed.json"
    if not installed_path.exists():
        return SiteState(root, None)
    try:
        raw = json.loads(installed_path.read_text(encoding="utf-8"))
        installed = Installed(
            bundle=str(raw["bundle"]),
            version=str(raw["version"]),
            targets_sha256=str(raw["targets_sha256"]),
            versions={str(k): int(v) for k, v in raw["versions"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MediaError(f"site state {installed_path} is unreadable: {exc}") from exc
    return SiteState(root, installed)


def record_installed(folder: Path, root: bytes, installed: Installed) -> None:
    """Write the trusted root and the installed bundle atomically (the installer's job)."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "root.json", root)
    atomic_write_json(
        folder / "installed.json",
        {
            "bundle": installed.bundle,
            "version": installed.version,
            "targets_sha256": installed.targets_sha256,
            "versions": installed.versions,
        },
    )
