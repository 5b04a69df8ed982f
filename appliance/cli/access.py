"""``appliance access``: the access proxy on a gateway host (ADR 0016)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

__all__ = ["app"]

app = typer.Typer(help="The access proxy: keys, limits and usage in front of the llm-gateway.")


@app.command("serve")
def serve_command(
    config: Path = typer.Option(..., "--config", help="The proxy's YAML configuration."),
) -> None:
    """Run the access proxy until stopped (the installer runs it under systemd)."""
    import uvloop

    from appliance.access.config import load_config
    from appliance.access.server import serve

    settings = load_config(config)
    os.umask(0o077)  # its journal and policy are for root only
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per long poll
    uvloop.run(serve(settings))
