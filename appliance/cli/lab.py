"""``appliance lab``: the multi-host systemd-nspawn labs that stand in for a site."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from appliance.cli._tables import print_table
from appliance.lab import DEFAULT_HOSTS, DEFAULT_LAB, down, labs_on_host, status, up

__all__ = ["app"]

app = typer.Typer(
    help="Boot, check and remove the multi-host labs, side by side by name (root; see "
    "docs/lab.md).",
    no_args_is_help=True,
)
_console = Console(highlight=False, soft_wrap=True)

_NAME = typer.Argument(
    None,
    metavar="NAME",
    help=f"The lab's name (default: {DEFAULT_LAB}, the demo's; with --state, the lab "
    "recorded there). Labs of different names can be up side by side.",
    show_default=False,
)
_STATE = typer.Option(
    None,
    "--state",
    help="The lab's state directory (default: where the lab is, else $APPLIANCE_CACHE/lab/NAME).",
)


@app.command("up")
def lab_up(
    name: str | None = _NAME,
    hosts: str = typer.Option(
        ",".join(DEFAULT_HOSTS),
        "--hosts",
        help="Comma-separated host names; ctrl*, gw* and gpu* pick the host's role.",
    ),
    state: Path | None = _STATE,
) -> None:
    """Make lab NAME and boot its machines; a lab already up is left as it is.

    Other labs on the host are not touched: each name has its own number, addresses
    and network names.
    """
    started = time.monotonic()

    def progress(message: str) -> None:
        _console.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {message}")

    names = [h.strip() for h in hosts.split(",") if h.strip()]
    report = up(names, state, name=name, progress=progress)
    slot = report.plan.slot
    if report.already_up:
        _console.print(f"lab {report.name} at {report.state} is already up; nothing changed")
    else:
        _console.print(f"lab {report.name} up in {time.monotonic() - started:.1f} s")
    _console.print(
        f"  lab number {slot.index}: site {slot.site_network} (workstation "
        f"{slot.installer_address}), outside {slot.outside_network}"
    )
    for machine in report.plan.machines:
        outside = f", outside {machine.outside_address}" if machine.outside_address else ""
        _console.print(f"  {machine.name:<10} {machine.site_address}{outside} ({machine.group})")
    vendor = report.plan.vendor
    _console.print(f"  {'vendor':<10} {vendor.address} (namespace {vendor.namespace})")
    _console.print(f"inventory: {report.inventory}")


@app.command("status")
def lab_status(name: str | None = _NAME, state: Path | None = _STATE) -> None:
    """Show each machine: address, running, SSH, namespace; exit 1 if anything is wrong."""
    result = status(state, name=name)
    table = Table("machine", "address", "running", "ssh", "namespace")
    for row in result.machines:
        table.add_row(
            row.name,
            row.address,
            _mark(row.running, f"pid {row.pid}" if row.pid else "no pid"),
            _mark(row.ssh, "answers" if row.ssh else "no answer"),
            _mark(row.namespace_present, row.namespace),
        )
    _console.print(
        f"lab {result.name} (number {result.plan.slot.index}) at {result.state} ({result.recorded})"
    )
    print_table(_console, table)
    for problem in result.problems:
        _console.print(f"[bold red]problem:[/] {problem}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("down")
def lab_down(name: str | None = _NAME, state: Path | None = _STATE) -> None:
    """Stop the lab's machines and remove every piece of it; other labs are not touched.

    Pieces already gone (a machine killed, a namespace or link deleted) count as removed.
    The cached base root filesystem is kept.
    """
    started = time.monotonic()
    report = down(state, name=name)
    if report.left_alone:
        _console.print(f"[yellow]left alone:[/] {report.left_alone}")
    if report.nothing:
        _console.print(f"no lab {report.name} at {report.state}: nothing to remove")
        return
    if report.stopped:
        killed = f" (killed after the timeout: {', '.join(report.killed)})" if report.killed else ""
        _console.print(f"stopped {', '.join(report.stopped)}{killed}")
    network = report.network
    if network.namespaces:
        _console.print(f"removed namespaces {', '.join(network.namespaces)}")
    if network.links:
        _console.print(f"removed links {', '.join(network.links)}")
    if network.firewall:
        _console.print(f"removed nft table inet {network.firewall}")
    if report.state_removed:
        _console.print(f"removed {report.state}")
    _console.print(f"lab {report.name} down in {time.monotonic() - started:.1f} s")


@app.command("reboot")
def lab_reboot(
    host: str = typer.Argument(..., help="The machine to reboot (ctrl1, gw1, …)."),
    lab: str | None = typer.Option(None, "--lab", help=f"The lab (default: {DEFAULT_LAB})."),
    state: Path | None = _STATE,
) -> None:
    """Power one machine off cleanly and boot it again, as a site's host is rebooted; its
    network stays. Returns when it answers SSH again."""
    from appliance.lab import reboot

    took = reboot(host, state, name=lab)
    _console.print(f"{host} rebooted: it answers SSH again after {took:.1f} s", markup=False)


@app.command("list")
def lab_list() -> None:
    """Every lab on this host: number, name, networks, machines, state directory."""
    found = labs_on_host()
    if not found:
        _console.print("no lab on this host")
        return
    for lab in found.values():
        slot = lab.slot
        name = lab.owner.name if lab.owner else "[bold red](no lab's tag)[/]"
        state = f", state {lab.owner.state}" if lab.owner else ""
        _console.print(
            f"{slot.index}  {name}: site {slot.site_network}, outside {slot.outside_network}, "
            f"{len(lab.machines)} machine(s) running{state}"
        )
        if lab.owner is None:
            _console.print(f"   pieces: {', '.join(lab.pieces)}")


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
    from appliance.lab.media import make_lab_media  # the bundle builder: loaded when used

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


@app.command("client")
def lab_client(
    name: str = typer.Argument("demo-client", help="The client identity's name."),
    out: Path = typer.Option(..., "--out", help="Folder for its identity, key and tools."),
    lab: str | None = typer.Option(None, "--lab", help=f"The lab (default: {DEFAULT_LAB})."),
    check: bool = typer.Option(
        False, "--check", help="Open the tunnel and ask the gateway for one chat completion."
    ),
) -> None:
    """A client identity of the lab's overlay, made, granted and given its key through the
    admin service and enrolled here; prints how to open a tunnel to the llm-gateway and ask
    it for a chat completion. The key works within seconds: no installer run."""
    from appliance.lab.client import NoOverlayError, chat, make_client, tunnel

    def say(message: str) -> None:
        _console.print(message, markup=False)

    try:
        client = make_client(name, out, lab_name=lab, say=say)
    except NoOverlayError as exc:
        _console.print(f"overlay: none: {exc} ({exc.hint})", markup=False)
        return
    _console.print(f"client:   {client.name}, enrolled: {client.identity}", markup=False)
    if check:
        with tunnel(client, out / f"{client.name}.tunnel.log") as port:
            answer = json.loads(chat(client, port))
        _console.print(
            f"checked:  a chat completion through the overlay ({answer['model']}, "
            f"{answer['usage']['total_tokens']} tokens)",
            markup=False,
        )
    _console.print(f"tunnel:   {client.tunnel_command()}", markup=False)
    _console.print(f"then:     {client.chat_command()}", markup=False)
