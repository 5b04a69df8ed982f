"""What a site tells its vendor it holds, so the vendor can send only what it lacks.

The installer keeps, for every bundle it imported, the signed metadata it arrived with
(``SITE/content/metadata/<version>/``, written after every byte of that bundle reached
the store). The export carries the targets.json of each release whose content the store
still holds whole, and the root the site trusts; its form is
:mod:`appliance.media.site_export`. Nothing secret: metadata the vendor signed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance._fsutil import atomic_write_bytes
from appliance.errors import InstallError
from appliance.install.layout import SiteDir
from appliance.install.steps import read_state
from appliance.media.layout import BUNDLE_FIELD, version_key
from appliance.media.site_export import SiteExport

__all__ = ["ExportSummary", "export_site_state"]


@dataclass
class ExportSummary:
    """What `appliance site state` wrote, and what it left out and why."""

    path: Path
    bundle: str
    installed: str | None
    releases: dict[str, int] = field(default_factory=dict)  # version → bytes held
    left_out: list[str] = field(default_factory=list)


def export_site_state(site_dir: Path, out: Path) -> ExportSummary:
    """Write the site's state for the vendor to ``out`` (atomically)."""
    site = SiteDir(site_dir)
    state = read_state(site)
    if state is None:
        raise InstallError(
            f"{site_dir} holds no trusted root: nothing was installed from it",
            hint="pass the --site-dir the install used (make demo prints its own)",
        )
    installed = state.installed.version if state.installed else None
    bundle = state.installed.bundle if state.installed else None
    releases: dict[str, dict[str, Any]] = {}
    summary = ExportSummary(out, "", installed)
    folders = site.metadata_dir.glob("*/targets.json")
    for path in sorted(folders, key=lambda p: _order(p.parent.name)):
        version = path.parent.name
        try:
            targets = json.loads(path.read_bytes())
            info = targets["signed"][BUNDLE_FIELD]
            wholes = {
                t["hashes"]["sha256"]: int(t["length"])
                for t in targets["signed"]["targets"].values()
                if not (t.get("custom") or {}).get("part_of")
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            summary.left_out.append(f"{version}: its targets.json is unreadable ({exc})")
            continue
        bundle = bundle or str(info.get("name"))
        if info.get("name") != bundle or info.get("version") != version:
            summary.left_out.append(f"{version}: its targets.json names {info}")
            continue
        lacking = [sha for sha, size in wholes.items() if not _holds(site, sha, size)]
        if lacking:
            summary.left_out.append(
                f"{version}: the store lacks {len(lacking)} of its {len(wholes)} files "
                f"(first {lacking[0]})"
            )
            continue
        releases[version] = targets
        summary.releases[version] = sum(wholes.values())
    if bundle is None or not releases:
        raise InstallError(
            f"the site store {site.content} holds no release whole",
            hint="install from full media first; then the vendor can send deltas",
        )
    root = json.loads(state.root)
    atomic_write_bytes(out, SiteExport(bundle, installed, root, releases).to_bytes(), mode=0o644)
    summary.bundle = bundle
    return summary


def _holds(site: SiteDir, sha: str, size: int) -> bool:
    """Present with its size; the site re-hashes it whenever delta media need it."""
    path = site.blob(sha)
    return path.is_file() and not path.is_symlink() and path.stat().st_size == size


def _order(version: str) -> tuple[int, ...]:
    try:
        return version_key(version)
    except ValueError:
        return ()
