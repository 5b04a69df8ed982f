"""``appliance lab``: the multi-host systemd-nspawn lab that stands in for a site."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from appliance.lab import DEFAULT_HOSTS, down, status, up
from appliance.lab.media import make_lab_media

__all__ = ["app"]

app = typer.Typer(
    help="Boot, check and remove the multi-host lab (root; see docs/lab.md).",
    no_args_is_help=True,
)
_console = Console(highlight=False, soft_wrap=True)

_STATE = typer.Option(
    None,
    "--state",
    help="The lab's state directory [default: $APPLIANCE_CACHE/lab/default].",
)


@app.command("up")
def lab_up(
    hosts: str = typer.Option(
        ",".join(DEFAULT_HOSTS),
        "--hosts",
        help="Comma-separated host names; ctrl*, gw* and gpu* pick the host's role.",
    ),
    state: Path | None = _STATE,
) -> None:
    """Make the lab and boot its machines; a lab already up is left as it is."""
    started = time.monotonic()

    def progress(message: str) -> None:
        _console.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {message}")

    names = [h.strip() for h in hosts.split(",") if h.strip()]
    report = up(names, state, progress=progress)
    if report.already_up:
        _console.print(f"the lab at {report.state} is already up; nothing changed")
    else:
        _console.print(f"lab up in {time.monotonic() - started:.1f} s")
    for machine in report.plan.machines:
        outside = f", outside {machine.outside_address}" if machine.outside_address else ""
        _console.print(f"  {machine.name:<10} {machine.site_address}{outside} ({machine.group})")
    vendor = report.plan.vendor
    _console.print(f"  {'vendor':<10} {vendor.address} (namespace {vendor.namespace})")
    _console.print(f"inventory: {report.inventory}")


@app.command("status")
def lab_status(state: Path | None = _STATE) -> None:
    """Show each machine: address, running, SSH, namespace; exit 1 if anything is wrong."""
    result = status(state)
    table = Table("machine", "address", "running", "ssh", "namespace")
    for row in result.machines:
        table.add_row(
            row.name,
            row.address,
            _mark(row.running, f"pid {row.pid}" if row.pid else "no pid"),
            _mark(row.ssh, "answers" if row.ssh else "no answer"),
            _mark(row.namespace_present, row.namespace),
        )
    _console.print(f"lab at {result.state} ({result.recorded})")
    _console.print(table)
    for problem in result.problems:
        _console.print(f"[bold red]problem:[/] {problem}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("down")
def lab_down(state: Path | None = _STATE) -> None:
    """Stop the machines and remove every piece of the lab (the cached base is kept)."""
    started = time.monotonic()
    report = down(state)
    if report.nothing:
        _console.print(f"no lab at {report.state}: nothing to remove")
        return
    if report.stopped:
        killed = f" (killed after the timeout: {', '.join(report.killed)})" if report.killed else ""
        _console.print(f"stopped {', '.join(report.stopped)}{killed}")
    if report.namespaces:
        _console.print(f"removed namespaces {', '.join(report.namespaces)}")
    if report.links:
        _console.print(f"removed links {', '.join(report.links)}")
    if report.firewall:
        _console.print("removed nft table inet appliance_lab")
    if report.state_removed:
        _console.print(f"removed {report.state}")
    _console.print(f"lab down in {time.monotonic() - started:.1f} s")


@app.command("media")
def lab_media(
    out: Path = typer.Option(..., "--out", help="New folder for the signed bundle."),
    keys: Path = typer.Option(
        ..., "--keys", help="Signing keys (made here when the folder does not exist)."
    ),
    definition: Path = typer.Option(Path("bundles/lab.yaml"), "--definition"),
    version: str | None = typer.Option(None, "--version", help="Bundle version to sign."),
) -> None:
    """Sign lab media from every lab component built on this machine."""
    media = make_lab_media(out, keys, definition=definition, version=version)
    _console.print(f"lab media {media.version}: {media.path}")
    _console.print(
        "components: " + ", ".join(f"{n} {v}" for n, v in sorted(media.components.items()))
    )
    for line in media.left_out:
        _console.print(f"[yellow]left out:[/] {line}")
    _console.print(f"root fingerprint: {media.root_fingerprint}")


def _mark(ok: bool, text: str) -> str:
    return f"[green]{text}[/]" if ok else f"[bold red]{text}[/]"
