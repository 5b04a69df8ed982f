"""Upgrade to a newer bundle, and roll back to the version an upgrade replaced.

An upgrade is an install of a newer bundle with one more journaled step: after preflight
and before anything changes, every host archives its configuration and databases
(installer/snapshot.yml) and the workstation writes the rollback point. When converge or
the health checks then fail, the upgrade rolls back by itself: each host gets its
snapshot back (what it had is archived beside it first), the previous version's stage
is converged again and must pass its health checks. `appliance rollback` does the same
on demand. Images and model weights of earlier versions stay on the hosts, by id and by
version, so a rollback copies no image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance._fsutil import atomic_write_json
from appliance.errors import ApplianceError, InstallError
from appliance.install.audit_outbox import report, report_failure
from appliance.install.installer import (
    InstallSummary,
    deploy,
    open_and_verify,
    open_journal,
    staged_vars,
    start_journal,
)
from appliance.install.journal import load_journal
from appliance.install.layout import SiteDir
from appliance.install.placement import SNAPSHOT_PATHS, STATEFUL_UNITS, service_units
from appliance.install.steps import (
    InstallOptions,
    Say,
    check_health,
    converge,
    failures_text,
    health_failure,
    locked_site,
    read_state,
    rerun_hint,
    run_staged,
)
from appliance.media.site_state import Installed, SiteState, record_installed
from appliance.media.verify import check_newer

__all__ = ["RollbackPoint", "UpgradeRolledBackError", "rollback", "upgrade"]


class UpgradeRolledBackError(InstallError):
    """The upgrade failed and the site was rolled back to the version it ran before."""


@dataclass(frozen=True)
class RollbackPoint:
    """The version an upgrade replaced, and the snapshot every host keeps of it."""

    snapshot: str
    installed: Installed
    upgraded_to: str

    def to_json(self) -> dict[str, Any]:
        """The form kept in SITE/rollback-point.json and the journal."""
        return {
            "snapshot": self.snapshot,
            "bundle": self.installed.bundle,
            "version": self.installed.version,
            "targets_sha256": self.installed.targets_sha256,
            "versions": self.installed.versions,
            "upgraded_to": self.upgraded_to,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RollbackPoint:
        """Read what :meth:`to_json` wrote."""
        return cls(
            snapshot=str(raw["snapshot"]),
            installed=Installed(
                str(raw["bundle"]),
                str(raw["version"]),
                str(raw["targets_sha256"]),
                {str(k): int(v) for k, v in raw["versions"].items()},
            ),
            upgraded_to=str(raw["upgraded_to"]),
        )


def upgrade(options: InstallOptions, say: Say) -> InstallSummary:
    """Upgrade the site to the newer bundle on ``options.media``; roll back if it fails."""
    with locked_site(options.site_dir, options.inventory) as site:
        target = "media " + ", ".join(str(m) for m in options.media)
        try:
            summary = _upgrade(options, site, say)
        except UpgradeRolledBackError as rolled_back:
            report(
                site,
                options.inventory,
                "installer.upgrade",
                target,
                "rolled-back",
                {"error": str(rolled_back.__cause__ or rolled_back).splitlines()[0][:500]},
                say,
            )
            raise
        except ApplianceError as failed:
            report_failure(site, options.inventory, "installer.upgrade", target, failed, say)
            raise
        details = {"changed": summary.changed, "resumed_at": summary.resumed_from}
        report(
            site,
            options.inventory,
            "installer.upgrade",
            f"{summary.bundle} {summary.version}",
            "ok",
            details,
            say,
        )
        return summary


def _upgrade(options: InstallOptions, site: SiteDir, say: Say) -> InstallSummary:
    state = read_state(site)
    if state is None or state.installed is None:
        raise InstallError(
            f"{site.root} records no install to upgrade",
            hint="a first install is `appliance install`",
        )
    installed = state.installed
    reader, bundle = open_and_verify(options, site, state, say)
    if (installed.version, installed.targets_sha256) == (bundle.version, bundle.targets_sha256):
        raise InstallError(
            f"{bundle.name} {bundle.version} is what the site runs already",
            hint="`appliance install` with this media reruns it; `appliance status` checks it",
        )
    check_newer(state, bundle)  # an older bundle, or a replayed version, is refused here
    staged_vars(site, installed.version)  # the way back must exist before we go
    journal, resumed = open_journal(site, bundle, "upgrade")
    point = RollbackPoint(
        snapshot=journal.step("snapshot").detail.get("snapshot")
        or f"{installed.version}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}",
        installed=installed,
        upgraded_to=bundle.version,
    )

    def snapshot() -> dict[str, Any]:
        say(f"snapshot of configuration and databases on every host: {point.snapshot}")
        _snapshot(site, bundle.version, options.inventory, point, say)
        atomic_write_json(site.rollback_point, point.to_json())
        return point.to_json()

    try:
        return deploy(options, site, reader, bundle, journal, resumed, say, snapshot)
    except InstallError as failed:
        if not journal.is_done("snapshot"):
            raise  # no host was changed: nothing to roll back
        say(f"the upgrade to {bundle.version} failed; rolling back to {installed.version}")
        try:
            _roll_back(site, state, point, options.inventory, options.health_wait_s, say)
        except ApplianceError as also:
            raise InstallError(
                f"the upgrade to {bundle.version} failed:\n{failed}\n"
                f"and rolling back to {installed.version} failed too:\n{also}",
                hint="fix the cause and run `appliance rollback`; every host keeps its "
                f"snapshot /var/lib/appliance/snapshots/{point.snapshot}.tar",
            ) from failed
        raise UpgradeRolledBackError(
            f"the upgrade to {bundle.version} failed, and the site was rolled back to "
            f"{installed.version}, which passed its health checks:\n{failed}",
            hint=failed.hint,
        ) from failed


def rollback(inventory: Path, site_dir: Path, health_wait_s: int, say: Say) -> InstallSummary:
    """Return the site to the version the last upgrade replaced, with its data."""
    with locked_site(site_dir, inventory) as site:
        state = read_state(site)
        journal = load_journal(site.journal)
        if journal is not None and journal.finished is None and journal.kind == "install":
            raise InstallError(
                f"an install of {journal.version} was interrupted: there is nothing to roll back",
                hint="rerun `appliance install` with its media",
            )
        if (
            journal is not None
            and journal.finished is None
            and journal.kind == "upgrade"
            and not journal.is_done("snapshot")
        ):
            raise InstallError(
                f"the interrupted upgrade to {journal.version} stopped before it changed any "
                "host: there is nothing to roll back",
                hint="rerun the same `appliance upgrade` to finish it",
            )
        point = _read_point(site)
        if state is None or point is None:
            raise InstallError(
                "no upgrade to roll back: the site records no version an upgrade replaced",
                hint="`appliance status` shows what the site runs",
            )
        try:
            summary = _roll_back(site, state, point, inventory, health_wait_s, say)
        except ApplianceError as failed:
            report_failure(
                site, inventory, "installer.rollback", point.installed.version, failed, say
            )
            raise
        details = {"from": point.upgraded_to, "snapshot": point.snapshot}
        report(site, inventory, "installer.rollback", point.installed.version, "ok", details, say)
        return summary


def _roll_back(
    site: SiteDir,
    state: SiteState,
    point: RollbackPoint,
    inventory: Path,
    health_wait_s: int,
    say: Say,
) -> InstallSummary:
    target = point.installed
    journal = load_journal(site.journal)
    resumed = None
    if journal is not None and journal.kind == "rollback" and journal.finished is None:
        resumed = next((s.name for s in journal.steps if s.state != "done"), None)
    else:
        journal = start_journal(
            site, target.bundle, target.version, target.targets_sha256, "rollback"
        )
    previous = staged_vars(site, target.version)
    ansible = site.stage(target.version) / "ansible"
    if not journal.is_done("restore"):
        journal.begin("restore")
        _restore(site, point, inventory, say)
        journal.done("restore", snapshot=point.snapshot, replaced=point.upgraded_to)

    journal.begin("converge")
    say(f"converging {target.bundle} {target.version} again")
    result = converge(site, ansible, inventory, previous, say)
    journal.done("converge", changed=result.changed)

    journal.begin("health")
    health, checked = check_health(site, ansible, inventory, previous, health_wait_s, say)
    if not health.ok or checked.failures:
        raise InstallError(
            f"{target.version} is not healthy after the rollback:\n"
            + health_failure(health, checked),
            hint=rerun_hint(checked),
        )
    journal.done("health", checks=len(health.checks))

    journal.begin("record")
    record_installed(site.root, state.root, target)  # the newest trusted root stays
    site.rollback_point.unlink(missing_ok=True)  # a second rollback has nowhere to go
    journal.done("record")
    summary = InstallSummary(target.bundle, target.version, resumed, result.total_changed)
    summary.health, summary.log = health, result.log
    return summary


def _snapshot(site: SiteDir, version: str, inventory: Path, point: RollbackPoint, say: Say) -> None:
    result = run_staged(
        site,
        site.stage(version) / "ansible",
        "snapshot.yml",
        inventory,
        {
            "appliance_snapshot_name": point.snapshot,
            "appliance_snapshot_paths": list(SNAPSHOT_PATHS),
            "appliance_stateful_units": list(STATEFUL_UNITS),
        },
        say,
    )
    if result.failures or result.rc != 0:
        raise InstallError(
            failures_text("the snapshot before the upgrade failed; no host was upgraded", result),
            hint=rerun_hint(result),
        )


def _restore(site: SiteDir, point: RollbackPoint, inventory: Path, say: Say) -> None:
    say(f"restoring configuration and databases from snapshot {point.snapshot}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = run_staged(
        site,
        site.stage(point.upgraded_to) / "ansible",
        "restore.yml",
        inventory,
        {
            "appliance_snapshot_name": point.snapshot,
            "appliance_restore_aside": f"{point.upgraded_to}-replaced-{stamp}",
            "appliance_snapshot_paths": list(SNAPSHOT_PATHS),
            "appliance_restart_units": service_units(),
            "appliance_admin_images": _admin_images(site, point),
        },
        say,
    )
    if result.failures or result.rc != 0:
        raise InstallError(
            failures_text("restoring the snapshot failed", result), hint=rerun_hint(result)
        )


def _admin_images(site: SiteDir, point: RollbackPoint) -> list[str]:
    """The admin images of both versions, newest first: either can carry the audit log."""
    refs = []
    for version in (point.upgraded_to, point.installed.version):
        catalog = staged_vars(site, version).get("appliance_images_catalog", {})
        if "appliance-admin" in catalog and catalog["appliance-admin"]["ref"] not in refs:
            refs.append(str(catalog["appliance-admin"]["ref"]))
    return refs


def _read_point(site: SiteDir) -> RollbackPoint | None:
    try:
        raw = json.loads(site.rollback_point.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InstallError(f"{site.rollback_point} cannot be read: {exc}") from exc
    try:
        return RollbackPoint.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InstallError(f"{site.rollback_point} is not one this installer wrote: {exc}") from exc
