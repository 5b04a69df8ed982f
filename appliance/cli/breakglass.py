"""``appliance breakglass``: the recorded vendor shell (ADR 0021): its proxy and SSH CA, and
its recordings verified offline, played and exported.

The proxy's modules (asyncssh, SQLAlchemy) are imported by the commands that use them, as
in `appliance admin`: every other `appliance` command starts without them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

__all__ = ["app"]

app = typer.Typer(
    help="The recorded vendor shell: its proxy, its SSH CA, and its recordings.",
    no_args_is_help=True,
)
_console = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_ALLOW_UNSEALED = typer.Option(
    False,
    "--allow-unsealed",
    help="Accept a recording cut short (no seal): check and use what its chain covers.",
)
_CHANNEL = typer.Option(None, "--channel", help="The channel to play (default: the first shell).")


@app.command("verify-recording")
def verify_recording(
    folder: Path = typer.Argument(..., help="A recording's folder (one SSH session)."),
    key: Path = typer.Option(
        ..., "--key", exists=True, dir_okay=False, help="The audit public key (PEM) to trust."
    ),
    window: int | None = typer.Option(None, "--window", help="The window it must belong to."),
    allow_unsealed: bool = _ALLOW_UNSEALED,
) -> None:
    """Verify a recording offline: chain, chunks, signed manifest; names the first problem."""
    from appliance.audit.recordings.verify import load_public_key
    from appliance.audit.recordings.verify import verify_recording as verify

    report = verify(
        folder,
        load_public_key(key.read_bytes()),
        window_id=window,
        allow_unsealed=allow_unsealed,
    )
    _console.print(report.describe())


@app.command("play")
def play(
    target: Path = typer.Argument(
        ..., exists=True, help="A recording's folder, or an asciicast (.cast) file."
    ),
    channel: int | None = _CHANNEL,
    speed: float = typer.Option(1.0, "--speed", help="Faster above 1, slower below."),
    verify_key: Path | None = typer.Option(
        None, "--verify-key", exists=True, dir_okay=False, help="Verify with this public key."
    ),
    max_idle: float = typer.Option(3.0, "--max-idle", help="Longest pause, in seconds."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Write the output without pauses."),
    allow_unsealed: bool = _ALLOW_UNSEALED,
) -> None:
    """Replay a shell channel's output in this terminal with its timing; list the files
    that moved (SFTP, scp) with their sizes and sha256."""
    from appliance.audit.recordings.verify import load_public_key
    from appliance.breakglass.recording.playback import load_cast
    from appliance.breakglass.recording.playback import play as replay

    key = load_public_key(verify_key.read_bytes()) if verify_key else None
    cast = load_cast(target, key=key, channel=channel, allow_unsealed=allow_unsealed)
    if cast.report is not None:
        _err.print(cast.report.describe())
    elif target.is_dir():
        _err.print(f"NOT VERIFIED (no --verify-key): {target}")
    if cast.transfers:
        _err.print(f"file transfers ({len(cast.transfers)}):")
        for line in cast.transfers:
            _err.print(line, markup=False)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    replay(
        cast.events,
        write=write,
        sleep=(lambda _s: None) if no_wait else time.sleep,
        speed=speed,
        max_idle=max_idle,
    )


@app.command("export-cast")
def export_cast(
    folder: Path = typer.Argument(..., help="A recording's folder."),
    out: Path = typer.Option(..., "--out", help="The asciicast v2 file to write."),
    key: Path = typer.Option(
        ..., "--key", exists=True, dir_okay=False, help="The audit public key (PEM) to trust."
    ),
    channel: int | None = _CHANNEL,
    allow_unsealed: bool = _ALLOW_UNSEALED,
) -> None:
    """Verify a recording, then write a shell channel as asciicast v2 (for asciinema)."""
    from appliance._fsutil import atomic_write_bytes
    from appliance.audit.recordings.verify import (
        load_public_key,
        read_events,
        verify_recording,
    )
    from appliance.breakglass.recording.asciicast import pick_channel, to_asciicast

    report = verify_recording(
        folder, load_public_key(key.read_bytes()), allow_unsealed=allow_unsealed
    )
    events = list(read_events(report.chunks))
    number = pick_channel(events, channel)
    lines = to_asciicast(events, number, title=f"window {report.window_id} {report.session_id}")
    atomic_write_bytes(out, "".join(f"{line}\n" for line in lines).encode())
    _console.print(f"{report.describe()}\nwrote channel {number} to {out}")


@app.command("shell-proxy")
def shell_proxy(
    config: Path = typer.Option(..., "--config", help="The proxy's YAML configuration."),
) -> None:
    """Run the vendor shell proxy until stopped (the installer runs it under systemd)."""
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
