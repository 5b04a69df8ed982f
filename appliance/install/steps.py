"""Steps that install, upgrade and rollback share: playbook runs, preflight, the lock.

installer.py and upgrade.py put them in order; each function here does one thing to the
site and says what it found.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.errors import InstallError, PreflightError
from appliance.install.ansible import PlaybookResult, run_playbook
from appliance.install.content import Staged
from appliance.install.health import HealthReport, judge_health
from appliance.install.layout import SiteDir
from appliance.install.placement import EDGE_COMPONENT, EDGE_PORTS, PLACEMENT, PORTS
from appliance.install.preflight import FipsMode, HostCheck, Requirements, judge_host
from appliance.media.site_state import SiteState, read_site_state
from appliance.media.verify import VerifiedBundle

__all__ = [
    "InstallOptions",
    "Say",
    "bundle_vars",
    "check_health",
    "converge",
    "failures_text",
    "health_failure",
    "locked_site",
    "preflight",
    "read_state",
    "rerun_hint",
    "run_staged",
]

Say = Callable[[str], None]


@dataclass(frozen=True)
class InstallOptions:
    """What the person at the workstation asked for (install and upgrade)."""

    media: list[Path]
    inventory: Path
    site_dir: Path
    root_fingerprint: str | None = None
    fips: FipsMode = "on"
    health_wait_s: int = 200  # vLLM on a CPU needs about a minute after a restart


@contextlib.contextmanager
def locked_site(site_dir: Path, inventory: Path) -> Iterator[SiteDir]:
    """The site folder, made if need be and held against a second installer."""
    if not inventory.is_file():
        raise InstallError(
            f"the inventory {inventory} does not exist",
            hint="write one like installer/inventory.example.yml on the media",
        )
    site = SiteDir(site_dir)
    try:
        site.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise InstallError(
            f"cannot make the installer's site folder {site.root}: {exc.strerror}",
            hint="run the installer as root, or pass --site-dir a folder you can write",
        ) from exc
    fd = os.open(site.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstallError(
                f"another installer holds {site.lock}",
                hint="wait for it to finish; a killed installer leaves no lock behind",
            ) from None
        _refuse_orphaned_playbooks(site)
        yield site
    finally:
        os.close(fd)


def _refuse_orphaned_playbooks(site: SiteDir) -> None:
    """A killed installer can leave its ansible-playbook running (it has its own session).

    A second run beside it would converge the same hosts twice at once, so the lock is
    not enough: look for a playbook started from this site folder.
    """
    root = str(site.root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a.endswith("ansible-playbook") for a in argv) and any(
            a.startswith(root + "/") for a in argv
        ):
            raise InstallError(
                f"a playbook of an earlier, interrupted run is still running (pid {entry.name})",
                hint=f"let it finish or stop it (kill {entry.name}), then rerun the same command",
            )


def read_state(site: SiteDir) -> SiteState | None:
    """What the site trusts and runs, or None before the first install."""
    if not (site.root / "root.json").exists():
        return None
    return read_site_state(site.root)


def bundle_vars(bundle: VerifiedBundle, staged: Staged, fips: FipsMode) -> dict[str, Any]:
    """The playbooks' variables for one bundle version."""
    return {
        **staged.extravars(),
        "appliance_bundle": {"name": bundle.name, "version": bundle.version},
        "appliance_placement": {g: list(c) for g, c in PLACEMENT.items()},
        "appliance_ports": PORTS,
        "appliance_edge_ports": {
            g: list(p) for g, p in EDGE_PORTS.items() if EDGE_COMPONENT[g] in staged.images
        },
        "appliance_fips_mode": fips,
    }


def run_staged(
    site: SiteDir,
    ansible_dir: Path,
    playbook: str,
    inventory: Path,
    extravars: dict[str, Any],
    say: Say,
) -> PlaybookResult:
    """Run one of a stage's playbooks, with its own folder and log under SITE/runs."""
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + playbook.removesuffix(".yml")
    return run_playbook(
        ansible_dir / "installer" / playbook,
        inventory=inventory.resolve(),
        private_dir=site.run(run_id),
        roles_path=ansible_dir / "roles",
        extravars=extravars,
        progress=lambda line: say("  " + line),
    )


def preflight(
    site: SiteDir,
    inventory: Path,
    staged: Staged,
    extravars: dict[str, Any],
    fips: FipsMode,
    say: Say,
) -> list[HostCheck]:
    """Probe every host read-only; refuse with every problem found, or return the checks."""
    refuse_strict_openziti(fips, staged)
    say("preflight: probing every host (read-only)")
    result = run_staged(site, staged.ansible, "preflight.yml", inventory, extravars, say)
    need = Requirements(
        component_bytes=_component_bytes(staged),
        image_ids={name: image.image_id for name, image in staged.images.items()},
        fips=fips,
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


#: Components that cannot run under GODEBUG=fips140=only (llm-gateway v0.1.4 can: seen).
FIPS_ONLY_REFUSED = ("ziti-controller", "ziti-router")


def refuse_strict_openziti(fips: FipsMode, staged: Staged) -> None:
    """``--fips strict`` runs Go programs with GODEBUG=fips140=only; OpenZiti cannot."""
    present = [c for c in FIPS_ONLY_REFUSED if c in staged.images]
    if fips != "strict" or not present:
        return
    raise PreflightError(
        f"--fips strict cannot be honoured for {', '.join(present)}: upstream OpenZiti does "
        "not start under GODEBUG=fips140=only. Its PKI and identity code use SHA-1 (the "
        "certificate key identifier in `ziti pki`, identity.getUniqueCerts at controller "
        "start), which the Go FIPS module refuses in that mode; nothing was changed on any host",
        hint="install with --fips on: the OpenZiti programs then run with GODEBUG=fips140=on "
        "(the Go FIPS module, approved algorithms by default) and the posture report says "
        "what is outside FIPS 140 (docs/install.md)",
    )


def converge(
    site: SiteDir, ansible_dir: Path, inventory: Path, extravars: dict[str, Any], say: Say
) -> PlaybookResult:
    """Run the site playbook; raise with every failed task when it fails."""
    say("converging the site (per host: the role it is in)")
    result = run_staged(site, ansible_dir, "site.yml", inventory, extravars, say)
    if result.failures or result.rc != 0:
        raise InstallError(
            failures_text("the site playbook failed", result), hint=rerun_hint(result)
        )
    return result


def check_health(
    site: SiteDir,
    ansible_dir: Path,
    inventory: Path,
    extravars: dict[str, Any],
    wait_s: int,
    say: Say,
) -> tuple[HealthReport, PlaybookResult]:
    """Run the health playbook, waiting up to ``wait_s`` for services; judge what it saw."""
    say("checking health (services may take a minute to start)")
    credentials = site.root / "credentials"
    credentials.mkdir(mode=0o700, exist_ok=True)
    health_vars = {
        **extravars,
        "appliance_health_retries": max(0, wait_s // 5),
        "appliance_credential_dir": str(credentials),
    }
    result = run_staged(site, ansible_dir, "health.yml", inventory, health_vars, say)
    health = judge_health(result.reports, [f.host for f in result.failures if f.unreachable])
    return health, result


def health_failure(health: HealthReport, result: PlaybookResult) -> str:
    """What failed in a health run, one line per check."""
    return "\n".join(f"  {c.host}: {c.name}: {c.detail}" for c in health.failed) + (
        "\n" + failures_text("", result) if result.failures else ""
    )


def failures_text(title: str, result: PlaybookResult) -> str:
    """The failed tasks of a run, one line per host."""
    lines = [title] if title else []
    lines += [
        f"  {f.host}: {'unreachable' if f.unreachable else f.task}: {f.message}"
        for f in result.failures
    ]
    return "\n".join(lines)


def rerun_hint(result: PlaybookResult) -> str:
    """Where the log is, and that a rerun keeps the finished steps."""
    return f"the full log is {result.log}; fix the cause and rerun: finished steps are kept"


def _component_bytes(staged: Staged) -> dict[str, int]:
    """Bytes each component brings to a host: its image's blobs, or its files."""
    folders = {name: image.path for name, image in staged.images.items()} | staged.files
    return {
        name: sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        for name, folder in folders.items()
    }
