"""``appliance install|upgrade|rollback|status``: the installer's commands at the site."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from appliance.cli._tables import print_table
from appliance.install.health import HealthReport
from appliance.install.installer import InstallSummary, install, site_status
from appliance.install.layout import DEFAULT_SITE_DIR
from appliance.install.placement import PORTS
from appliance.install.preflight import FipsMode
from appliance.install.steps import InstallOptions
from appliance.install.upgrade import rollback, upgrade

__all__ = ["install_command", "rollback_command", "status_command", "upgrade_command"]

_console = Console(highlight=False, soft_wrap=True)
_SITE = typer.Option(
    DEFAULT_SITE_DIR, "--site-dir", help="The installer's state on this workstation."
)
_INVENTORY = typer.Option(..., "--inventory", "-i", help="Ansible inventory of the site's hosts.")
_MEDIA = typer.Option(
    ..., "--media", help="The bundle: a folder, an ISO image, or every volume of a set."
)
_ROOT_FINGERPRINT = typer.Option(
    None,
    "--root-fingerprint",
    help="sha256:… of the vendor's root, from the paperwork (required on a first install, "
    "and when the media's root was rotated).",
)
_FIPS = typer.Option("on", "--fips", help="strict, on or off (see docs/install.md).")
_HEALTH_WAIT = typer.Option(
    200,
    "--health-wait",
    min=0,
    help="Seconds to wait for services to come up before health checks fail.",
)


def _say(line: str) -> None:
    _console.print(line, markup=False)


def install_command(
    media: list[Path] = _MEDIA,
    inventory: Path = _INVENTORY,
    root_fingerprint: str | None = _ROOT_FINGERPRINT,
    fips: str = _FIPS,
    health_wait: int = _HEALTH_WAIT,
    site_dir: Path = _SITE,
) -> None:
    """Verify the media, then install the site from it (a rerun resumes or changes nothing)."""
    options = InstallOptions(
        media, inventory, site_dir, root_fingerprint, _fips_mode(fips), health_wait
    )
    _timed("installed", lambda: install(options, _say))


def upgrade_command(
    media: list[Path] = _MEDIA,
    inventory: Path = _INVENTORY,
    root_fingerprint: str | None = _ROOT_FINGERPRINT,
    fips: str = _FIPS,
    health_wait: int = _HEALTH_WAIT,
    site_dir: Path = _SITE,
) -> None:
    """Upgrade to the newer bundle on the media; on failure the site is rolled back."""
    options = InstallOptions(
        media, inventory, site_dir, root_fingerprint, _fips_mode(fips), health_wait
    )
    _timed("upgraded to", lambda: upgrade(options, _say))


def rollback_command(
    inventory: Path = _INVENTORY, health_wait: int = _HEALTH_WAIT, site_dir: Path = _SITE
) -> None:
    """Return the site to the version the last upgrade replaced, with its data."""
    _timed("rolled back to", lambda: rollback(inventory, site_dir, health_wait, _say))


def _fips_mode(fips: str) -> FipsMode:
    if fips not in ("strict", "on", "off"):
        raise typer.BadParameter("--fips takes strict, on or off", param_hint="--fips")
    return fips  # type: ignore[return-value]


def _timed(done: str, run: Callable[[], InstallSummary]) -> None:
    started = time.monotonic()
    summary = run()
    _summarise(done, summary, time.monotonic() - started)


def _summarise(done: str, summary: InstallSummary, elapsed: float) -> None:
    if summary.health is not None:
        _health_table(summary.health)
    resumed = f" (resumed at {summary.resumed_from})" if summary.resumed_from else ""
    _console.print(
        f"\n[bold]{done} {summary.bundle} {summary.version}[/]{resumed} in {elapsed:.0f} s"
    )
    if summary.changed == 0:
        _console.print("the site was already in this state: Ansible changed=0, nothing changed")
    else:
        _console.print(f"Ansible made {summary.changed} changes")
    port = PORTS["admin"]["appliance-admin"]
    for host in summary.admin_hosts:
        _console.print(
            f"admin service: https://127.0.0.1:{port}/ on {host} (loopback only; from the "
            f"workstation: ssh -L {port}:127.0.0.1:{port} root@{host})"
        )
    for credential in summary.credential_files:
        secret = credential.read_text(encoding="utf-8").strip()
        _console.print(
            f"one-time password of user admin on {credential.stem}: {secret}  "
            f"(kept in {credential}, 0600; change it at first login)",
            markup=False,
        )
    if summary.log is not None:
        _console.print(f"full log: {summary.log}")


def status_command(inventory: Path = _INVENTORY, site_dir: Path = _SITE) -> None:
    """Per host: installed versions, health and FIPS posture (read-only)."""
    state, health = site_status(inventory, site_dir, _say)
    if state is not None and state.installed is not None:
        _console.print(f"site runs {state.installed.bundle} {state.installed.version}")
    _health_table(health)
    if health.overlay_missing:
        _console.print(health.overlay_missing, markup=False)
    versions = Table("host", "components", "FIPS posture", title="installed")
    for host in sorted(set(health.installed) | set(health.fips)):
        components = health.installed.get(host, {}).get("components", {})
        fips = health.fips.get(host, {})
        versions.add_row(
            host,
            ", ".join(f"{k} {v}" for k, v in sorted(components.items())) or "-",
            _posture(fips),
        )
    print_table(_console, versions)
    if not health.ok:
        raise typer.Exit(1)


def _posture(fips: dict[str, object]) -> str:
    if not fips:
        return "no report"
    kernel = fips.get("kernel", {})
    openssl = fips.get("openssl", {})
    go = fips.get("go", {})
    return (
        f"mode {fips.get('mode')}; kernel {kernel.get('fips') if isinstance(kernel, dict) else '?'}"
        f"; OpenSSL provider {'yes' if isinstance(openssl, dict) and openssl.get('fips') else 'no'}"
        f"; Go {go.get('godebug') if isinstance(go, dict) else '?'}"
    )


def _health_table(health: HealthReport) -> None:
    table = Table("host", "check", "result", "detail", title="health")
    for check in health.checks:
        table.add_row(
            check.host, check.name, "[green]ok[/]" if check.ok else "[red]FAIL[/]", check.detail
        )
    print_table(_console, table)
