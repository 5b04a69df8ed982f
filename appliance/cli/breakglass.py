"""``appliance breakglass``: the recorded vendor shell's proxy and its SSH CA (ADR 0021)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer
from rich.console import Console

# The proxy's modules (asyncssh, SQLAlchemy) are imported by the commands that use them,
# as in `appliance admin`: every other `appliance` command starts without them.

__all__ = ["app"]

app = typer.Typer(help="The recorded vendor shell: its proxy and SSH CA.", no_args_is_help=True)
_console = Console(highlight=False, soft_wrap=True)


@app.command("shell-proxy")
def shell_proxy(
    config: Path = typer.Option(..., "--config", help="The proxy's YAML configuration."),
) -> None:
    """Run the vendor shell proxy until stopped (the installer runs it under systemd)."""
    import asyncio

    from appliance.breakglass.shell.config import load_config
    from appliance.breakglass.shell.serve import run

    settings = load_config(config)
    os.umask(0o077)  # what it writes is for root only
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # not a line per channel
    asyncio.run(run(settings))


@app.command("shell-ca")
def shell_ca(
    key: Path = typer.Option(..., "--key", help="The CA's private key file."),
    init: bool = typer.Option(False, "--init", help="Create the key (refused if it exists)."),
) -> None:
    """Print the site SSH CA's public key line (for targets' TrustedUserCAKeys); with
    --init, create the key first (0600, in a folder only root may enter)."""
    from appliance.breakglass.shell.ca import SiteSshCa, create_key

    ca = SiteSshCa(create_key(key)) if init else SiteSshCa.load(key)
    typer.echo(ca.public_line())


@app.command("shell-host-key")
def shell_host_key(
    key: Path = typer.Option(..., "--key", help="The proxy's host key file."),
    init: bool = typer.Option(False, "--init", help="Create the key (refused if it exists)."),
) -> None:
    """Print the proxy's SSH host key and its fingerprint (what vendors check when they
    connect); with --init, create the key first."""
    from appliance.breakglass.shell.ca import create_key, load_key

    host_key = create_key(key) if init else load_key(key)
    typer.echo(host_key.export_public_key("openssh").decode("ascii").strip())
    typer.echo(host_key.get_fingerprint("sha256"))
