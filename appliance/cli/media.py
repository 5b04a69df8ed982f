"""``appliance media``: write a bundle for removable media (a copy, an ISO, or volumes)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from appliance.bundle.volumes import parse_size, write_media

__all__ = ["app"]

app = typer.Typer(
    help="Write a bundle for removable media: a folder, an ISO image, or split volumes.",
    no_args_is_help=True,
)
_console = Console(highlight=False)


class MediaFormat(StrEnum):
    """What ``media write`` produces."""

    dir = "dir"
    iso = "iso"


def _volume_size(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("write")
def write(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="The bundle folder to write."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write into."),
    fmt: MediaFormat = typer.Option(..., "--format", "-f", help="A folder tree or ISO images."),
    volume_size: str | None = typer.Option(
        None,
        "--volume-size",
        metavar="SIZE",
        help="Split into volumes of at most SIZE: 4.7G, 4GiB, 700M or bytes "
        "(K/M/G/T are powers of 1000, KiB/MiB/GiB/TiB of 1024).",
    ),
) -> None:
    """Write BUNDLE to OUT as a folder tree or an ISO image, or as volumes of SIZE.

    `dir` copies the tree to OUT; `iso` writes OUT/<bundle name>.iso. With --volume-size
    the bundle is split into OUT/vol01, vol02, … (or volNN.iso), each with all of the
    metadata and a share of the targets. Nothing half-written is ever left at OUT.
    """
    written = write_media(bundle, out, fmt=fmt.value, volume_size=_volume_size(volume_size))
    for item in written:
        _console.print(f"wrote {item.path}  ({_size(item.size)})")
    if len(written) > 1:
        total = sum(item.size for item in written)
        _console.print(f"{len(written)} volumes, {_size(total)} in all")


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit} ({size} bytes)"
        value /= 1024
    return f"{size} B"
