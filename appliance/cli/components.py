"""``appliance components``: build the component images a bundle definition names."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from appliance.cli._tables import print_table
from appliance.errors import BuildError, DefinitionError
from appliance.settings import supplied_dir

if TYPE_CHECKING:  # the builder and its models load in the command that builds
    from appliance.components.build import BuildReport
    from appliance.definition import Component

__all__ = ["app"]

app = typer.Typer(
    help="Build the component images (OCI archives) and the lab model.",
    no_args_is_help=True,
)
_console = Console(highlight=False)


@app.command("build")
def build(
    definition: Path = typer.Option(
        Path("bundles/lab.yaml"), "--definition", "-d", help="Bundle definition to build."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for the OCI archives and components.lock.json "
        "(default: the folder the definition's image paths name, build/components)",
    ),
    only: list[str] = typer.Option([], "--only", help="Build just this component (repeatable)."),
    source: list[str] = typer.Option(
        [],
        "--source",
        metavar="NAME=REFERENCE",
        help="Take an image component from oci-archive:PATH or docker://REF, or a Go "
        "program from its release archive, executable or upstream image (repeatable).",
    ),
    supplied: Path | None = typer.Option(
        None,
        "--supplied",
        help="Folder of prebuilt OpenZiti programs (ziti, llm-gateway, or their release "
        "archives) (default: $APPLIANCE_SUPPLIED, else $APPLIANCE_CACHE/supplied)",
    ),
) -> None:
    """Build every component of DEFINITION from its pinned upstream source.

    Go programs are built from their modules with the Go Cryptographic Module, Python
    images are installed offline onto a debootstrap Debian base, and the result is saved
    with `podman save --format oci-archive`. Heavy inputs are cached in $APPLIANCE_CACHE.
    """
    from appliance.components.build import build_components
    from appliance.definition import load_definition

    parsed = load_definition(definition)

    def started(component: Component) -> None:
        _console.print(f"[bold]building[/] {component.name} {component.version} …")

    sources = {}
    for item in source:
        name, sep, reference = item.partition("=")
        if not sep or not name or not reference:
            raise DefinitionError(f"--source {item!r}: expected NAME=REFERENCE")
        sources[name] = reference
    folder = supplied if supplied is not None else supplied_dir()
    if supplied is not None and not supplied.is_dir():
        raise DefinitionError(f"--supplied {supplied}: no such folder")
    report = build_components(
        parsed, out=out, only=only or None, sources=sources, supplied=folder, on_start=started
    )
    _print_report(report)
    if report.failed:
        names = ", ".join(r.name for r in report.failed)
        raise BuildError(
            f"{len(report.failed)} of {len(report.results)} components failed: {names}",
            hint="the reason for each is printed above",
        )


@app.command("supplied")
def supplied(
    folder: Path | None = typer.Option(
        None, "--supplied", help="(default: $APPLIANCE_SUPPLIED, else $APPLIANCE_CACHE/supplied)"
    ),
) -> None:
    """Say in one line which OpenZiti programs are supplied, or what to supply where."""
    from appliance.components.supplied import describe_supplied

    _console.print(describe_supplied(folder or supplied_dir()), soft_wrap=True)


@app.command("fetch-player")
def fetch_player() -> None:
    """Fetch the auditors' recording player (asciinema-player, pinned) with npm into the
    cache, check it against its pins, and print the folder (the admin service's
    player_assets when run from a checkout; the admin image carries it)."""
    from appliance.components.player import fetch_player as fetch

    print(fetch())


def _print_report(report: BuildReport) -> None:
    table = Table(title="Components", title_justify="left")
    for column in (
        "component",
        "version",
        "result",
        "time",
        "size",
        "digest",
        "FIPS build",
        "source",
    ):
        table.add_column(column, overflow="fold")
    for result in report.results:
        entry = result.image or result.files
        if entry is None:
            table.add_row(
                result.name,
                result.version,
                "[red]failed[/]",
                f"{result.seconds:.0f} s",
                "",
                "",
                "",
                "",
            )
            continue
        digest = (
            result.image.digest
            if result.image
            else f"sha256:{result.files.sha256}"
            if result.files
            else ""
        )
        fips = ("yes" if result.image.fips.built_for_fips else "no") if result.image else "n/a"
        program = result.image.program if result.image else None
        source = f"{program.version}, {program.supplied}" if program else entry.source
        status = result.status + (f" ({', '.join(result.reused)} reused)" if result.reused else "")
        table.add_row(
            result.name,
            result.version,
            status,
            f"{result.seconds:.0f} s",
            _size(entry.size),
            digest[:19] + "…",
            fips,
            source,
        )
    print_table(_console, table)
    for result in report.failed:
        message = str(result.error).removeprefix(f"{result.name}: ")  # named once, not twice
        _console.print(f"[red]{result.name}[/]: {message}", soft_wrap=True)
        if result.error is not None and result.error.hint:
            _console.print(f"  what to do: {result.error.hint}")
    _console.print(f"lock file: {report.lock_path}")


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


@app.command("lock")
def lock(
    definition: Path = typer.Option(
        Path("bundles/lab.yaml"), "--definition", help="Bundle definition file."
    ),
) -> None:
    """Pin every Python wheel of the definition's images and installer by version and
    sha256, in NAME.lock.json beside the definition (commit it).

    Builds then download exactly those wheels and refuse one whose digest differs. Run it
    when a definition's Python pins change; review the diff like any dependency change.
    """
    from appliance.components.locking import lock_definition
    from appliance.definition import load_definition

    path, locks = lock_definition(load_definition(definition))
    for part, wheels in sorted(locks.items()):
        _console.print(f"{part}: {len(wheels)} wheels pinned")
    _console.print(f"wrote {path}")
