"""``appliance site``: what the installer's site record holds, for the vendor."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from appliance.install.layout import DEFAULT_SITE_DIR
from appliance.install.site_export import export_site_state

__all__ = ["app"]

app = typer.Typer(help="The site's record, for the vendor.", no_args_is_help=True)
_console = Console(highlight=False, soft_wrap=True)


@app.command("state")
def state(
    out: Path = typer.Option(..., "--out", "-o", help="File to write (a small JSON file)."),
    site_dir: Path = typer.Option(
        DEFAULT_SITE_DIR, "--site-dir", help="The installer's state on this workstation."
    ),
) -> None:
    """Write what the site holds (releases, by the vendor's signed metadata) for the vendor.

    The vendor builds delta media against it: `appliance bundle build … --since FILE`.
    No secret is in it; the vendor's own signatures make it tamper-evident.
    """
    summary = export_site_state(site_dir, out)
    installed = summary.installed or "nothing yet"
    _console.print(f"wrote {summary.path}: bundle {summary.bundle}, installed {installed}")
    for version, size in summary.releases.items():
        _console.print(f"  holds {version} whole ({size / 2**30:.2f} GiB)", markup=False)
    for line in summary.left_out:
        _console.print(f"  left out {line}", markup=False)
