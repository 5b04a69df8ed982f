"""``appliance breakglass``: verify a vendor session's recording offline, play it, export it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.console import Console

__all__ = ["app"]

app = typer.Typer(
    help="Verify, play and export recordings of vendor shell sessions (ADR 0021).",
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
    from appliance.breakglass.recording.verify import load_public_key
    from appliance.breakglass.recording.verify import verify_recording as verify

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
    """Replay a shell channel's output in this terminal with its timing."""
    from appliance.breakglass.recording.playback import load_cast
    from appliance.breakglass.recording.playback import play as replay
    from appliance.breakglass.recording.verify import load_public_key

    key = load_public_key(verify_key.read_bytes()) if verify_key else None
    cast = load_cast(target, key=key, channel=channel, allow_unsealed=allow_unsealed)
    if cast.report is not None:
        _err.print(cast.report.describe())
    elif target.is_dir():
        _err.print(f"NOT VERIFIED (no --verify-key): {target}")

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
    from appliance.breakglass.recording.asciicast import pick_channel, to_asciicast
    from appliance.breakglass.recording.verify import (
        load_public_key,
        read_events,
        verify_recording,
    )

    report = verify_recording(
        folder, load_public_key(key.read_bytes()), allow_unsealed=allow_unsealed
    )
    events = list(read_events(report.chunks))
    number = pick_channel(events, channel)
    lines = to_asciicast(events, number, title=f"window {report.window_id} {report.session_id}")
    atomic_write_bytes(out, "".join(f"{line}\n" for line in lines).encode())
    _console.print(f"{report.describe()}\nwrote channel {number} to {out}")
