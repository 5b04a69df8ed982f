"""Root of the command tree; the one place that turns ApplianceError into a clear message."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from appliance import __version__
from appliance.cli import (
    access,
    admin,
    audit,
    breakglass,
    bundle,
    cache,
    components,
    install,
    keys,
    lab,
    media,
)
from appliance.errors import ApplianceError

__all__ = ["app", "main"]

app = typer.Typer(
    name="appliance",
    help=(
        "Air-gapped LLM appliance. Build signed media on a connected machine, install it "
        "offline as a dark OpenZiti mesh, and run the admin service."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(components.app, name="components")
app.add_typer(media.app, name="media")
app.add_typer(keys.app, name="keys")
app.add_typer(bundle.app, name="bundle")
app.add_typer(admin.app, name="admin")
app.add_typer(access.app, name="access")
app.add_typer(audit.app, name="audit")
app.add_typer(breakglass.app, name="breakglass")
app.command("install")(install.install_command)
app.command("upgrade")(install.upgrade_command)
app.command("rollback")(install.rollback_command)
app.command("status")(install.status_command)
app.add_typer(lab.app, name="lab")
app.add_typer(cache.app, name="cache")

_state = {"verbose": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"appliance {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the cause of errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["verbose"] = verbose


def main() -> None:
    """Entry point of the console script: run the app, print ApplianceError without traceback."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        app()
    except ApplianceError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True)
        if exc.hint:
            err.print(f"[bold]what to do:[/] {exc.hint}")
        if _state["verbose"] and exc.__cause__ is not None:
            err.print(f"cause: {exc.__cause__!r}")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted; nothing half-written was kept")
        sys.exit(130)
