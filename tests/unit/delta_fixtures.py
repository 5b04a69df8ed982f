"""Releases N-1, N and N+1 of one bundle, and sites that hold N-1 or N, for delta tests.

N-1 differs from N in the model and its config; N+1 differs from N in the model's
weights only, and is built as delta media against N.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from appliance.install.content import import_bundle
from appliance.install.layout import SiteDir
from appliance.media.reader import DirectoryReader
from appliance.media.site_state import Installed, record_installed
from appliance.media.verify import TrustAnchor, VerifiedBundle, verify_bundle
from tests.unit.bundle_fixtures import NOW, Built, build


@dataclass
class Releases:
    """Three releases signed by one set of keys; ``delta`` is N+1 against N."""

    older: Built
    n: Built
    delta: Built
    full: Built  # N+1 again, whole (other keys' metadata versions do not matter here)

    @property
    def fingerprint(self) -> str:
        return self.older.keys_init.fingerprint


def make_releases(root: Path) -> Releases:
    """N-1, N, and N+1 both as a delta against N and (signed separately) whole."""
    older = build(root / "n-1", version="2026.10.0", model_text=b"older", hidden_size=64)
    n = build(root / "n", keys=older.keys, version="2026.11.0")
    n.keys_init = older.keys_init
    delta = build(
        root / "n1", keys=older.keys, version="2026.12.0", model_text=b"newer", since=n.bundle
    )
    delta.keys_init = older.keys_init
    full = build(root / "n1-full", keys=older.keys, version="2026.12.0", model_text=b"newer")
    full.keys_init = older.keys_init
    return Releases(older, n, delta, full)


def site_at(fingerprint: str, built: Built, folder: Path) -> SiteDir:
    """A site that installed ``built`` from full media: its store, metadata and record."""
    site = SiteDir(folder)
    verified = verify(built.bundle, fingerprint)
    import_bundle(verified, DirectoryReader(built.bundle), site)
    record_installed(
        site.root,
        verified.root_bytes,
        Installed(verified.name, verified.version, verified.targets_sha256, verified.versions),
    )
    return site


def verify(path: Path, fingerprint: str, **kwargs: object) -> VerifiedBundle:
    """Verify a bundle folder against the vendor's fingerprint at the fixtures' time."""
    return verify_bundle(
        DirectoryReader(path),
        TrustAnchor(fingerprint=fingerprint),
        now=NOW,
        **kwargs,  # type: ignore[arg-type]
    )


def copy_site(site: SiteDir, folder: Path) -> SiteDir:
    """A writable copy of a site folder, to change without touching the shared one."""
    shutil.copytree(site.root, folder)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return SiteDir(folder)
