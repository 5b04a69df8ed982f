"""The one place that defines the file a site gives its vendor: what its store holds.

``appliance site state --out FILE`` writes it at the site; ``appliance bundle build
--since FILE`` reads it on the vendor's build machine (ADR 0020)::

    {
      "format": "appliance-site-state/1",
      "bundle": "lab",
      "installed": "2026.11.1",                  (or null before a first install)
      "root": {...},                             the root metadata the site trusts
      "releases": {"2026.11.1": {...}, ...}      each release whose content the store
    }                                            holds whole: its targets.json as signed

No secret and no site key is in it. It is tamper-evident through the vendor's own
signatures: the vendor checks that the root is one of its roots and that each
targets.json carries its targets signature, so an altered file is refused at build time.
Nothing here decides trust: this module only reads and writes the form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from appliance.errors import MetadataError

__all__ = ["SITE_STATE_FORMAT", "SiteExport", "parse_site_export"]

SITE_STATE_FORMAT = "appliance-site-state/1"
#: A site's export is small (a few targets.json); anything far larger is not one.
MAX_EXPORT_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SiteExport:
    """What a site holds, as it tells its vendor (unverified until the vendor checks it)."""

    bundle: str
    installed: str | None
    root: dict[str, Any]
    releases: dict[str, dict[str, Any]]

    def to_bytes(self) -> bytes:
        """The file's bytes: indented, key-sorted JSON."""
        value = {
            "format": SITE_STATE_FORMAT,
            "bundle": self.bundle,
            "installed": self.installed,
            "root": self.root,
            "releases": self.releases,
        }
        return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode("utf-8")


def parse_site_export(data: bytes, where: str) -> SiteExport:
    """Read a site-state file; MetadataError naming what is malformed."""
    hint = "ask the site for a fresh export: appliance site state --out FILE"
    if len(data) > MAX_EXPORT_BYTES:
        raise MetadataError(
            f"{where} is over {MAX_EXPORT_BYTES} bytes: not a site state", hint=hint
        )
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise MetadataError(f"{where} is not JSON: {exc}", hint=hint) from exc
    if not isinstance(raw, dict) or raw.get("format") != SITE_STATE_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise MetadataError(
            f"{where}: expected format {SITE_STATE_FORMAT!r}, found {found!r}", hint=hint
        )
    bundle, installed = raw.get("bundle"), raw.get("installed")
    root, releases = raw.get("root"), raw.get("releases")
    if (
        not isinstance(bundle, str)
        or not (installed is None or isinstance(installed, str))
        or not isinstance(root, dict)
        or not isinstance(releases, dict)
        or not all(isinstance(k, str) and isinstance(v, dict) for k, v in releases.items())
    ):
        raise MetadataError(
            f"{where}: expected bundle, installed, root and releases (version → targets "
            "metadata) as appliance site state writes them",
            hint=hint,
        )
    return SiteExport(bundle, installed, root, releases)
