"""``appliance keys``: the vendor's signing keys for bundle metadata."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from appliance.bundle.signing import init_keys
from appliance.crypto.keys import passphrase_from_env

__all__ = ["app"]

app = typer.Typer(help="Create the vendor's bundle signing keys.", no_args_is_help=True)
_console = Console(highlight=False, soft_wrap=True)


@app.command("init")
def init(
    directory: Path = typer.Argument(..., help="New, empty folder for the keys."),
    root_threshold: int = typer.Option(1, "--root-threshold", help="Root signatures needed."),
    root_keys: int = typer.Option(1, "--root-keys", help="Root keys to create."),
    encrypt: bool = typer.Option(
        False,
        "--encrypt",
        help="Encrypt private keys with a passphrase (APPLIANCE_KEY_PASSPHRASE, or asked).",
    ),
) -> None:
    """Create ECDSA P-384 keys for the TUF roles and the signed root metadata (version 1).

    Prints the root fingerprint to print on the delivery paperwork: the site compares it
    before trusting the first media.
    """
    passphrase = None
    if encrypt:
        passphrase = passphrase_from_env() or typer.prompt(
            "Passphrase for the private keys", hide_input=True, confirmation_prompt=True
        ).encode("utf-8")
    made = init_keys(
        directory, root_threshold=root_threshold, root_keys=root_keys, passphrase=passphrase
    )
    _console.print(
        f"keys written to {directory} (private keys mode 0600{', encrypted' if passphrase else ''})"
    )
    _console.print(
        f"root: {made.root_threshold} of {made.root_keys} keys; metadata {made.root_path}"
    )
    _console.print(
        "keep the root-*.pem keys offline; bundles need only targets, snapshot and timestamp keys"
    )
    _console.print(f"[bold]root fingerprint:[/] {made.fingerprint}")
