"""The install, step by step: verify → import → preflight → converge → health → record.

Each step is journaled (appliance/install/journal.py). Nothing touches a host before the
media is verified, and nothing is converged before every host passed preflight. A killed
install resumes at the step it was in; a rerun of a finished install repeats the steps
and reports that nothing changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance._fsutil import atomic_write_json
from appliance.bundle.reader import open_bundle_media
from appliance.bundle.site_state import Installed, SiteState, read_site_state, record_installed
from appliance.bundle.verify import TrustAnchor, VerifiedBundle, check_newer, verify_bundle
from appliance.crypto.keys import fingerprint
from appliance.errors import InstallError, MediaError, PreflightError
from appliance.install.ansible import PlaybookResult, run_playbook
from appliance.install.content import Staged, import_bundle, stage_bundle
from appliance.install.health import HealthReport, judge_health
from appliance.install.journal import Journal, load_journal, new_journal
from appliance.install.layout import SiteDir
from appliance.install.placement import EDGE_PORTS, PLACEMENT, PORTS
from appliance.install.preflight import FipsMode, HostCheck, Requirements, judge_host

__all__ = ["InstallOptions", "InstallSummary", "install", "site_status"]

Say = Callable[[str], None]


@dataclass(frozen=True)
class InstallOptions:
    """What the person at the workstation asked for."""

    media: list[Path]
    inventory: Path
    site_dir: Path
    root_fingerprint: str | None = None
    fips: FipsMode = "on"
    health_retries: int = 40  # x 5 s: vLLM on a CPU needs about a minute after a restart


@dataclass
class InstallSummary:
    """What an install did, for the closing summary."""

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
    _require_inventory(options.inventory)
    site = SiteDir(options.site_dir)
    try:
        site.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise InstallError(
            f"cannot make the installer's site folder {site.root}: {exc.strerror}",
            hint="run the installer as root, or pass --site-dir a folder you can write",
        ) from exc
    with _locked(site):
        return _install(options, site, say)


def _require_inventory(inventory: Path) -> None:
    if not inventory.is_file():
        raise InstallError(
            f"the inventory {inventory} does not exist",
            hint="write one like installer/inventory.example.yml on the media",
        )


def _install(options: InstallOptions, site: SiteDir, say: Say) -> InstallSummary:
    state = _site_state(site)
    say("verifying the media (nothing touches a host before this passes)")
    reader, partial = open_bundle_media(options.media)
    if partial:
        raise MediaError(
            f"{options.media[0]} is one volume of a set: the install needs every volume",
            hint="pass all volumes: --media VOL1 --media VOL2 …",
        )
    bundle = _verify(reader, state, options.root_fingerprint)
    say(
        f"verified bundle {bundle.name} {bundle.version}: {bundle.verified_files} files, "
        f"{bundle.verified_bytes / 2**30:.2f} GiB, root {bundle.root_fingerprint[:23]}…"
    )
    journal, resumed = _journal(site, bundle)
    journal.done("verify", root_fingerprint=bundle.root_fingerprint)
    summary = InstallSummary(bundle.name, bundle.version, resumed, changed=0)

    journal.begin("import")
    copied, nbytes = import_bundle(bundle, reader, site)
    staged = stage_bundle(bundle, site)
    journal.done("import", copied=copied, bytes=nbytes)
    say(f"imported into the site store: {copied} new files, {nbytes / 2**20:.0f} MiB")

    common = _extravars(bundle, staged, options)
    atomic_write_json(site.stage_vars(bundle.version), common)  # `appliance status` reads it
    if not journal.is_done("preflight"):
        journal.begin("preflight")
        summary.preflight = _preflight(site, options, staged, bundle, common, say)
        journal.done("preflight", hosts=[c.host for c in summary.preflight])
    else:
        say("preflight passed in the interrupted run: not repeated")

    journal.begin("converge")
    say("converging the site (per host: the role it is in)")
    result = _run(site, "site.yml", options, staged, common, say)
    summary.log = result.log
    if result.failures or result.rc != 0:
        raise InstallError(_failures_text("the site playbook failed", result), hint=_rerun(result))
    summary.changed = result.total_changed
    journal.done("converge", changed=result.changed)

    journal.begin("health")
    say("checking health (services may take a minute to start)")
    credentials = site.root / "credentials"
    credentials.mkdir(mode=0o700, exist_ok=True)
    health_vars = {
        **common,
        "appliance_health_retries": options.health_retries,
        "appliance_credential_dir": str(credentials),
    }
    result = _run(site, "health.yml", options, staged, health_vars, say)
    health = judge_health(result.reports, [f.host for f in result.failures if f.unreachable])
    summary.health = health
    if not health.ok or result.failures:
        raise InstallError(
            "health checks failed after the install:\n"
            + "\n".join(f"  {c.host}: {c.name}: {c.detail}" for c in health.failed)
            + ("\n" + _failures_text("", result) if result.failures else ""),
            hint=_rerun(result),
        )
    journal.done("health", checks=len(health.checks))

    journal.begin("record")
    record_installed(
        site.root,
        bundle.root_bytes,
        Installed(bundle.name, bundle.version, bundle.targets_sha256, bundle.versions),
    )
    journal.done("record")
    summary.admin_hosts = sorted(
        {c.host for c in health.checks if c.name == "admin service up" and c.ok}
    )
    summary.credential_files = sorted(
        p for p in credentials.glob("*.credential") if p.stem in summary.admin_hosts
    )
    return summary


def site_status(inventory: Path, site_dir: Path, say: Say) -> tuple[SiteState | None, HealthReport]:
    """What the site runs and how it is, from the hosts themselves (read-only)."""
    _require_inventory(inventory)
    site = SiteDir(site_dir)
    state = _site_state(site)
    if state is None or state.installed is None:
        raise InstallError(
            f"{site_dir} records no install",
            hint="pass the --site-dir the install used, or install first",
        )
    stage = site.stage(state.installed.version)
    try:
        common = json.loads(site.stage_vars(state.installed.version).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InstallError(
            f"the staged bundle {stage} is incomplete: {exc}",
            hint="rerun the install with the installed media: it restores the stage",
        ) from exc
    options = InstallOptions(media=[], inventory=inventory, site_dir=site_dir)
    common["appliance_health_retries"] = 0
    result = _run_staged(site, stage / "ansible", "health.yml", options, common, say)
    return state, judge_health(result.reports, [f.host for f in result.failures if f.unreachable])


# -- steps ------------------------------------------------------------------------------


def _site_state(site: SiteDir) -> SiteState | None:
    if not (site.root / "root.json").exists():
        return None
    return read_site_state(site.root)


def _verify(reader: Any, state: SiteState | None, root_fingerprint: str | None) -> VerifiedBundle:
    if state is not None:
        anchor = TrustAnchor(root=state.root)
    elif root_fingerprint:
        anchor = TrustAnchor(fingerprint=root_fingerprint)
    else:
        raise InstallError(
            "a first install needs the vendor's root fingerprint",
            hint="pass --root-fingerprint sha256:… exactly as printed on the paperwork that "
            "came with the media (never copy it from the media itself)",
        )
    bundle = verify_bundle(reader, anchor)
    if (
        state is not None
        and root_fingerprint
        and root_fingerprint
        not in (
            fingerprint(state.root),
            bundle.root_fingerprint,
        )
    ):
        raise InstallError(
            f"--root-fingerprint {root_fingerprint} is neither the site's trusted root nor "
            "the media's newest root"
        )
    if state is not None and state.installed is not None:
        same = (state.installed.version, state.installed.targets_sha256) == (
            bundle.version,
            bundle.targets_sha256,
        )
        if not same:
            check_newer(state, bundle)
            raise InstallError(
                f"the site runs {state.installed.bundle} {state.installed.version}; this media "
                f"holds {bundle.version}",
                hint="upgrades are `appliance upgrade` (not in this version of the installer)",
            )
    return bundle


def _journal(site: SiteDir, bundle: VerifiedBundle) -> tuple[Journal, str | None]:
    """Resume an interrupted install of this bundle, or start a new journal."""
    old = load_journal(site.journal)
    if old is not None and old.finished is None:
        if old.targets_sha256 != bundle.targets_sha256:
            raise InstallError(
                f"an install of {old.bundle} {old.version} was interrupted; this media holds "
                f"{bundle.name} {bundle.version}",
                hint="finish the interrupted install with its own media first",
            )
        running = next((s.name for s in old.steps if s.state != "done"), None)
        return old, running
    journal = new_journal(
        site.journal,
        bundle=bundle.name,
        version=bundle.version,
        targets_sha256=bundle.targets_sha256,
        kind="install",
    )
    return journal, None


def _extravars(bundle: VerifiedBundle, staged: Staged, options: InstallOptions) -> dict[str, Any]:
    return {
        **staged.extravars(),
        "appliance_bundle": {"name": bundle.name, "version": bundle.version},
        "appliance_placement": {g: list(c) for g, c in PLACEMENT.items()},
        "appliance_ports": PORTS,
        "appliance_edge_ports": {g: list(p) for g, p in EDGE_PORTS.items()},
        "appliance_fips_mode": options.fips,
    }


def _preflight(
    site: SiteDir,
    options: InstallOptions,
    staged: Staged,
    bundle: VerifiedBundle,
    extravars: dict[str, Any],
    say: Say,
) -> list[HostCheck]:
    say("preflight: probing every host (read-only)")
    result = _run(site, "preflight.yml", options, staged, extravars, say)
    need = Requirements(
        component_bytes=_component_bytes(staged),
        image_ids={name: image.image_id for name, image in staged.images.items()},
        fips=options.fips,
    )
    checks = [judge_host(host, r.get("preflight", {}), need) for host, r in result.reports.items()]
    for failure in result.failures:
        if failure.host not in result.reports:
            checks.append(HostCheck(failure.host, problems=[f"unreachable: {failure.message}"]))
    checks.sort(key=lambda c: c.host)
    for check in checks:
        found = ", ".join(f"{k} {v}" for k, v in check.found.items())
        say(f"  {check.host:<10} {'ok  ' if check.ok else 'FAIL'} {found}")
    problems = [f"  {c.host}: {p}" for c in checks for p in c.problems]
    if not checks:
        problems.append("  the inventory names no host")
    if problems:
        raise PreflightError(
            "preflight refused the install; nothing was changed on any host:\n"
            + "\n".join(problems),
            hint="fix what is listed and rerun the same command",
        )
    return checks


def _component_bytes(staged: Staged) -> dict[str, int]:
    """Bytes each component brings to a host: its image's blobs, or its files."""
    folders = {name: image.path for name, image in staged.images.items()} | staged.files
    return {
        name: sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        for name, folder in folders.items()
    }


def _run(
    site: SiteDir,
    playbook: str,
    options: InstallOptions,
    staged: Staged,
    extravars: dict[str, Any],
    say: Say,
) -> PlaybookResult:
    return _run_staged(site, staged.ansible, playbook, options, extravars, say)


def _run_staged(
    site: SiteDir,
    ansible_dir: Path,
    playbook: str,
    options: InstallOptions,
    extravars: dict[str, Any],
    say: Say,
) -> PlaybookResult:
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + playbook.removesuffix(".yml")
    return run_playbook(
        ansible_dir / "installer" / playbook,
        inventory=options.inventory.resolve(),
        private_dir=site.run(run_id),
        roles_path=ansible_dir / "roles",
        extravars=extravars,
        progress=lambda line: say("  " + line),
    )


def _failures_text(title: str, result: PlaybookResult) -> str:
    lines = [title] if title else []
    lines += [
        f"  {f.host}: {'unreachable' if f.unreachable else f.task}: {f.message}"
        for f in result.failures
    ]
    return "\n".join(lines)


def _rerun(result: PlaybookResult) -> str:
    return f"the full log is {result.log}; fix the cause and rerun: finished steps are kept"


@contextlib.contextmanager
def _locked(site: SiteDir) -> Iterator[None]:
    fd = os.open(site.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstallError(
                f"another install holds {site.lock}",
                hint="wait for it to finish; a killed install leaves no lock behind",
            ) from None
        yield
    finally:
        os.close(fd)
