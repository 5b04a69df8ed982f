"""The install, step by step: verify → import → preflight → converge → health → record.

Each step is journaled (appliance/install/journal.py). Nothing touches a host before the
media is verified, and nothing is converged before every host passed preflight. A killed
install resumes at the step it was in; a rerun of a finished install repeats the steps
and reports that nothing changed. Upgrades and rollbacks are in upgrade.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance._fsutil import atomic_write_json
from appliance.crypto.keys import fingerprint
from appliance.errors import ApplianceError, InstallError, MediaError
from appliance.install.audit_outbox import report, report_failure
from appliance.install.content import SiteStore, import_bundle, stage_bundle
from appliance.install.health import HealthReport, judge_health
from appliance.install.journal import Journal, Kind, load_journal, new_journal
from appliance.install.layout import SiteDir
from appliance.install.preflight import HostCheck
from appliance.install.steps import (
    InstallOptions,
    Say,
    bundle_vars,
    check_health,
    converge,
    health_failure,
    locked_site,
    preflight,
    read_state,
    rerun_hint,
    run_staged,
)
from appliance.media.opener import open_bundle_media
from appliance.media.reader import MediaReader
from appliance.media.site_state import Installed, SiteState, record_installed
from appliance.media.verify import TrustAnchor, VerifiedBundle, check_newer, verify_bundle

__all__ = ["InstallOptions", "InstallSummary", "install", "site_status"]


@dataclass
class InstallSummary:
    """What an install or upgrade did, for the closing summary."""

    bundle: str
    version: str
    resumed_from: str | None
    changed: int
    preflight: list[HostCheck] = field(default_factory=list)
    health: HealthReport | None = None
    admin_hosts: list[str] = field(default_factory=list)
    credential_files: list[Path] = field(default_factory=list)
    log: Path | None = None


def install(options: InstallOptions, say: Say) -> InstallSummary:
    """Install (or rerun the install of) the bundle on ``options.media`` onto the site."""
    with locked_site(options.site_dir, options.inventory) as site:
        try:
            state = read_state(site)
            reader, bundle = open_and_verify(options, site, state, say)
            _refuse_other_versions(state, bundle)
            journal, resumed = open_journal(site, bundle, "install")
            summary = deploy(options, site, reader, bundle, journal, resumed, say)
        except ApplianceError as failed:
            report_failure(
                site, options.inventory, "installer.install", _media(options), failed, say
            )
            raise
        details = {"changed": summary.changed, "resumed_at": summary.resumed_from}
        report(site, options.inventory, "installer.install", _target(summary), "ok", details, say)
        return summary


def _media(options: InstallOptions) -> str:
    return "media " + ", ".join(str(m) for m in options.media)


def _target(summary: InstallSummary) -> str:
    return f"{summary.bundle} {summary.version}"


def open_and_verify(
    options: InstallOptions, site: SiteDir, state: SiteState | None, say: Say
) -> tuple[MediaReader, VerifiedBundle]:
    """Open every volume and verify the bundle against the site's (or the given) root.

    What delta media leave out must be in the site's store, and is hashed there again.
    """
    say("verifying the media (nothing touches a host before this passes)")
    reader, partial = open_bundle_media(options.media)
    if partial:
        raise MediaError(
            f"{options.media[0]} is one volume of a set: the install needs every volume",
            hint="pass all volumes: --media VOL1 --media VOL2 …",
        )
    if state is not None:
        anchor = TrustAnchor(root=state.root)
    elif options.root_fingerprint:
        anchor = TrustAnchor(fingerprint=options.root_fingerprint)
    else:
        raise InstallError(
            "a first install needs the vendor's root fingerprint",
            hint="pass --root-fingerprint sha256:… exactly as printed on the paperwork that "
            "came with the media (never copy it from the media itself)",
        )
    bundle = verify_bundle(reader, anchor, store=SiteStore(site))
    given = options.root_fingerprint
    if (
        state is not None
        and given
        and given not in (fingerprint(state.root), bundle.root_fingerprint)
    ):
        raise InstallError(
            f"--root-fingerprint {given} is neither the site's trusted root nor "
            "the media's newest root"
        )
    say(
        f"verified bundle {bundle.name} {bundle.version}: {bundle.verified_files} files, "
        f"{bundle.verified_bytes / 2**30:.2f} GiB, root {bundle.root_fingerprint[:23]}…"
    )
    if bundle.at_site:
        releases = ", ".join(sorted({held.release for held in bundle.at_site.values()}))
        held_bytes = sum(held.target.length for held in bundle.at_site.values())
        say(
            f"delta media: {len(bundle.at_site)} more files ({held_bytes / 2**30:.2f} GiB) of "
            f"release {releases} were found in the site store and hashed again"
        )
    return reader, bundle


def _refuse_other_versions(state: SiteState | None, bundle: VerifiedBundle) -> None:
    """`install` installs a first bundle or reruns the installed one, nothing else."""
    if state is None or state.installed is None:
        return
    installed = state.installed
    if (installed.version, installed.targets_sha256) == (bundle.version, bundle.targets_sha256):
        return
    check_newer(state, bundle)  # older or replayed media: refused as such
    raise InstallError(
        f"the site runs {installed.bundle} {installed.version}; this media holds {bundle.version}",
        hint="a newer bundle is installed with `appliance upgrade` (same options)",
    )


def open_journal(site: SiteDir, bundle: VerifiedBundle, kind: Kind) -> tuple[Journal, str | None]:
    """Resume an interrupted run of this bundle, or start a new journal."""
    old = load_journal(site.journal)
    if old is not None and old.finished is None:
        if old.targets_sha256 != bundle.targets_sha256 or old.kind != kind:
            raise InstallError(
                f"an {old.kind} of {old.bundle} {old.version} was interrupted; this is an "
                f"{kind} of {bundle.name} {bundle.version}",
                hint=f"finish it first: rerun `appliance {old.kind}` as it was started"
                + (", or `appliance rollback`" if old.kind == "upgrade" else ""),
            )
        running = next((s.name for s in old.steps if s.state != "done"), None)
        return old, running
    return start_journal(site, bundle.name, bundle.version, bundle.targets_sha256, kind), None


def start_journal(site: SiteDir, bundle: str, version: str, targets: str, kind: Kind) -> Journal:
    """A new journal; the previous one is kept under SITE/journals for the record."""
    if site.journal.exists():
        site.journals.mkdir(exist_ok=True, mode=0o700)
        kept = json.loads(site.journal.read_text(encoding="utf-8"))
        site.journal.replace(
            site.journals / f"{kept.get('started', 'unknown')}-{kept.get('kind', '')}.json"
        )
    return new_journal(
        site.journal, bundle=bundle, version=version, targets_sha256=targets, kind=kind
    )


def deploy(
    options: InstallOptions,
    site: SiteDir,
    reader: MediaReader,
    bundle: VerifiedBundle,
    journal: Journal,
    resumed: str | None,
    say: Say,
    before_converge: Callable[[], dict[str, Any]] | None = None,
) -> InstallSummary:
    """The journaled steps shared by install and upgrade, from import to record.

    ``before_converge`` (upgrade: the snapshot) runs once, after preflight, as its own
    journal step.
    """
    journal.done("verify", root_fingerprint=bundle.root_fingerprint)
    summary = InstallSummary(bundle.name, bundle.version, resumed, changed=0)

    journal.begin("import")
    copied, nbytes = import_bundle(bundle, reader, site)
    staged = stage_bundle(bundle, site)
    journal.done("import", copied=copied, bytes=nbytes)
    say(f"imported into the site store: {copied} new files, {nbytes / 2**20:.0f} MiB")

    common = bundle_vars(bundle, staged, options.fips)
    atomic_write_json(site.stage_vars(bundle.version), common)  # status and rollback read it
    if not journal.is_done("preflight"):
        journal.begin("preflight")
        summary.preflight = preflight(site, options.inventory, staged, common, options.fips, say)
        journal.done("preflight", hosts=[c.host for c in summary.preflight])
    else:
        say("preflight passed in the interrupted run: not repeated")

    if before_converge is not None and not journal.is_done("snapshot"):
        journal.begin("snapshot")
        journal.done("snapshot", **before_converge())

    journal.begin("converge")
    result = converge(site, staged.ansible, options.inventory, common, say)
    summary.log = result.log
    summary.changed = result.total_changed
    journal.done("converge", changed=result.changed)

    journal.begin("health")
    health, result = check_health(
        site, staged.ansible, options.inventory, common, options.health_wait_s, say
    )
    summary.health = health
    if not health.ok or result.failures:
        raise InstallError(
            "health checks failed after the install:\n" + health_failure(health, result),
            hint=rerun_hint(result),
        )
    journal.done("health", checks=len(health.checks))

    journal.begin("record")
    _record(site, bundle, journal)
    journal.done("record")
    summary.admin_hosts = sorted(
        {c.host for c in health.checks if c.name == "admin service up" and c.ok}
    )
    credentials = site.root / "credentials"
    summary.credential_files = sorted(
        p for p in credentials.glob("*.credential") if p.stem in summary.admin_hosts
    )
    return summary


def _record(site: SiteDir, bundle: VerifiedBundle, journal: Journal) -> None:
    if journal.kind == "upgrade":
        # What a later `appliance rollback` returns to: the version this upgrade replaced.
        atomic_write_json(site.rollback_point, journal.step("snapshot").detail)
    record_installed(
        site.root,
        bundle.root_bytes,
        Installed(bundle.name, bundle.version, bundle.targets_sha256, bundle.versions),
    )


def site_status(inventory: Path, site_dir: Path, say: Say) -> tuple[SiteState | None, HealthReport]:
    """What the site runs and how it is, from the hosts themselves (read-only)."""
    if not inventory.is_file():
        raise InstallError(
            f"the inventory {inventory} does not exist",
            hint="pass the inventory the install used",
        )
    site = SiteDir(site_dir)
    state = read_state(site)
    if state is None or state.installed is None:
        raise InstallError(
            f"{site_dir} records no install",
            hint="pass the --site-dir the install used, or install first",
        )
    common = staged_vars(site, state.installed.version)
    common["appliance_health_retries"] = 0
    stage = site.stage(state.installed.version)
    result = run_staged(site, stage / "ansible", "health.yml", inventory, common, say)
    return state, judge_health(result.reports, [f.host for f in result.failures if f.unreachable])


def staged_vars(site: SiteDir, version: str) -> dict[str, Any]:
    """The variables an install of ``version`` ran with, from its stage."""
    try:
        common: dict[str, Any] = json.loads(site.stage_vars(version).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InstallError(
            f"the staged bundle {site.stage(version)} is incomplete: {exc}",
            hint=f"rerun `appliance install` with the media of {version}: it restores the stage",
        ) from exc
    if not (site.stage(version) / "ansible").is_dir():
        raise InstallError(
            f"the staged bundle {site.stage(version)} has no playbooks",
            hint=f"rerun `appliance install` with the media of {version}: it restores the stage",
        )
    return common
