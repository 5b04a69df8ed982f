"""The one place that defines the site folder the installer keeps on the workstation.

    SITE/root.json, SITE/installed.json   trust anchor and what runs (bundle/site_state.py)
    SITE/journal.json                     the install, upgrade or rollback in progress or
                                          last finished; earlier ones in SITE/journals/
    SITE/rollback-point.json              the version the last upgrade replaced, and the
                                          name of its snapshot on every host
    SITE/lock                             held while an install runs (fcntl)
    SITE/content/sha256/<hex>             every verified target, stored once by digest
    SITE/content/metadata/<version>/      the signed metadata each bundle arrived with
    SITE/stage/<version>/                 what the playbooks read, made from content/:
        images/<component>/               OCI layout (index.json, oci-layout, blobs/)
        files/<component>/<path>          component files (model weights, …)
        ansible/roles/, ansible/installer/  the bundle's roles and playbooks
    SITE/stage/<version>.vars.json        the variables the playbooks were given (for status)
    SITE/runs/<run id>/                   ansible-runner's folder and the full log of a run

Snapshots of configuration and databases stay on each host (/var/lib/appliance/snapshots):
they hold private keys and password hashes, which never leave their host.

Every file here is written atomically; content files are hard-linked into stage folders,
so a stage costs no space and a half-made stage is simply made again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_SITE_DIR", "SiteDir"]

#: Where the installer keeps its state unless told otherwise (root-only, like /var/lib/dpkg).
DEFAULT_SITE_DIR = Path("/var/lib/appliance/site")


@dataclass(frozen=True)
class SiteDir:
    """Paths inside one site folder."""

    root: Path

    @property
    def journal(self) -> Path:
        """The install journal."""
        return self.root / "journal.json"

    @property
    def journals(self) -> Path:
        """Finished or superseded journals, by start time."""
        return self.root / "journals"

    @property
    def rollback_point(self) -> Path:
        """What `appliance rollback` returns to."""
        return self.root / "rollback-point.json"

    @property
    def lock(self) -> Path:
        """The lock file held by a running install."""
        return self.root / "lock"

    @property
    def content(self) -> Path:
        """Verified targets by sha256."""
        return self.root / "content" / "sha256"

    def blob(self, sha256_hex: str) -> Path:
        """Where a verified target with this digest is kept."""
        return self.content / sha256_hex

    @property
    def metadata_dir(self) -> Path:
        """The signed metadata of every bundle imported, one folder per version."""
        return self.root / "content" / "metadata"

    def metadata(self, version: str) -> Path:
        """The signed metadata a bundle version arrived with (written once its content is
        in the store: ``appliance site state`` exports it for delta media)."""
        return self.metadata_dir / version

    def stage(self, version: str) -> Path:
        """What the playbooks of a bundle version read."""
        return self.root / "stage" / version

    def stage_vars(self, version: str) -> Path:
        """The playbook variables an install of ``version`` used."""
        return self.root / "stage" / f"{version}.vars.json"

    def run(self, run_id: str) -> Path:
        """ansible-runner's private folder for one playbook run."""
        return self.root / "runs" / run_id
