"""``appliance bundle``: build, verify and inspect signed bundles."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from appliance._fsutil import atomic_write_bytes
from appliance.cli._tables import print_table
from appliance.crypto.keys import passphrase_from_env
from appliance.errors import MediaError
from appliance.media.layout import SBOM_TARGET
from appliance.media.opener import open_bundle_media, open_media

if TYPE_CHECKING:  # the heavy modules (TUF, CycloneDX) load in the commands that use them
    from appliance.bundle.vulns import Finding
    from appliance.definition import Definition
    from appliance.media.verify import TrustAnchor

__all__ = ["app"]

app = typer.Typer(help="Build, verify and inspect signed bundles.", no_args_is_help=True)
_console = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False)


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=_err,
        transient=True,
    )


@app.command("build")
def build(
    definition: Path = typer.Argument(..., help="Bundle definition (bundles/lab.yaml)."),
    keys: Path = typer.Option(..., "--keys", help="Folder made by `appliance keys init`."),
    out: Path = typer.Option(..., "--out", help="New folder for the bundle."),
    expires_days: int = typer.Option(
        120, "--expires-days", help="Days until targets, snapshot and timestamp expire."
    ),
    wheelhouse: bool = typer.Option(
        True,
        "--wheelhouse/--no-wheelhouse",
        help="Carry the installer's wheels (needs a package index).",
    ),
    since: Path | None = typer.Option(
        None,
        "--since",
        exists=True,
        help="Build delta media: carry only what this base lacks. A previous bundle (folder, "
        "ISO or one volume), its metadata/targets.json, or a site's `appliance site state` file.",
    ),
) -> None:
    """Write a signed bundle: TUF metadata, content-addressed targets, wheels, SBOM.

    With --since the metadata still names the whole release, but only the content the
    base lacks is written: the site finds the rest in its store (ADR 0020).
    """
    from appliance.bundle.builder import build_bundle
    from appliance.bundle.delta import load_base
    from appliance.components.pylock import INSTALLER, locked_for
    from appliance.components.wheelhouse import installer_wheelhouse
    from appliance.definition import load_definition

    parsed = load_definition(definition)
    base = load_base(since, keys) if since is not None else None

    def wheels(spec: Definition, scratch: Path) -> list[Path]:
        locked = locked_for(parsed, INSTALLER)  # the lock beside the definition file
        return installer_wheelhouse(spec.installer.requirements, scratch, locked)

    with _bar() as progress:
        task = progress.add_task("storing targets", total=None)
        result = build_bundle(
            parsed,
            keys,
            out,
            wheelhouse=wheels if wheelhouse else None,
            passphrase=passphrase_from_env(),
            expires_in=timedelta(days=expires_days),
            on_progress=lambda _name, n: progress.advance(task, n),
            base=base,
        )
    _console.print(f"bundle {result.name} {result.version} written to {result.path}")
    if base is not None:
        _console.print(
            f"delta against {base.bundle} {', '.join(base.releases)}: carries "
            f"{_gib(result.stored_bytes)}; leaves {result.left_to_site} targets "
            f"({_gib(result.left_to_site_bytes)}) to the site's store"
        )
    _console.print(
        f"{result.targets} targets, {_gib(result.stored_bytes)} stored; its images take "
        f"{_gib(result.image_bytes)} as separate archives (shared layers stored once)"
    )
    _console.print(f"root fingerprint: {result.root_fingerprint}")


@app.command("verify")
def verify(
    paths: list[Path] = typer.Argument(..., help="Bundle folder, ISO file, or all volumes."),
    root: Path | None = typer.Option(
        None, "--root", exists=True, dir_okay=False, help="Trusted root metadata file."
    ),
    root_fingerprint: str | None = typer.Option(
        None, "--root-fingerprint", help="sha256:… from the delivery paperwork."
    ),
    site_state: Path | None = typer.Option(
        None, "--site-state", help="Site state folder: refuse rollbacks and foreign roots."
    ),
) -> None:
    """Prove the bundle authentic, intact, complete (and newer than the site's): exit 0.

    Streams from read-only media and writes nothing. A single volume of a set is checked
    on its own: everything on it must verify; the rest is on the other volumes.
    """
    from appliance.media.site_state import read_site_state
    from appliance.media.verify import TrustAnchor, verify_bundle

    if (root is None) == (root_fingerprint is None) and site_state is None:
        raise MediaError(
            "no trust anchor: pass --root ROOT.json or --root-fingerprint sha256:…",
            hint="the fingerprint is printed on the media's delivery paperwork",
        )
    site = read_site_state(site_state) if site_state is not None else None
    anchor = _anchor(root, root_fingerprint) or TrustAnchor(root=site.root if site else b"")
    reader, partial = open_bundle_media(paths)
    with _bar() as progress:
        task = progress.add_task("verifying", total=None)
        result = verify_bundle(
            reader,
            anchor,
            site=site,
            partial=partial,
            on_progress=lambda n: progress.advance(task, n),
        )
    scope = (
        f"{result.verified_files} files on this volume verified, "
        f"{len(result.missing)} on other volumes"
        if partial
        else f"{result.verified_files} files, {_gib(result.verified_bytes)} verified"
    )
    soonest = min(result.expires.values())
    _console.print(
        f"OK: bundle {result.name} {result.version} is authentic and intact: {scope}; "
        f"root {result.root_fingerprint[:23]}… version {result.root.version}; "
        f"expires {soonest:%Y-%m-%d}"
    )


@app.command("inspect")
def inspect(
    paths: list[Path] = typer.Argument(..., help="Bundle folder, ISO file, or all volumes."),
) -> None:
    """Show what the bundle says it holds. Not a trust decision: use `bundle verify`."""
    from appliance.bundle.inspect import inspect_bundle

    summary = inspect_bundle(open_media(paths))
    _console.print(
        f"bundle {summary.name} {summary.version}: {summary.targets} targets, "
        f"{_gib(summary.total_bytes)}  (unverified: run `appliance bundle verify`)"
    )
    _console.print(
        f"on the media: {summary.carried_files} files, {_gib(summary.carried_bytes)}"
        + (f"; {summary.elsewhere} more on other volumes" if summary.elsewhere else "")
    )
    for release, (count, size) in summary.at_site.items():
        _console.print(
            f"delta media: expected at the site (the store of a site that holds "
            f"{summary.name} {release}): {count} files, {_gib(size)}"
        )
    table = Table(title="Components", title_justify="left")
    columns = ("component", "version", "size", "image digest", "files", "contents", "content")
    for column in columns:
        table.add_column(column, overflow="fold")
    for comp in summary.components:
        table.add_row(
            comp.name,
            comp.version,
            _gib(comp.size) if comp.size or not comp.at_site else "",
            comp.image_digest or "",
            str(comp.files) if comp.files else "",
            ", ".join(f"{n} {kind}" for kind, n in sorted(comp.contents.items())),
            f"at the site ({comp.at_site})" if comp.at_site else "on the media",
        )
    print_table(_console, table)
    _console.print("SBOM: " + ", ".join(f"{n} {k}" for k, n in sorted(summary.sbom.items())))
    _console.print(f"root {summary.root_fingerprint} (version {summary.root_version})")
    for role, (threshold, keyids) in sorted(summary.roles.items()):
        _console.print(
            f"  {role}: {threshold} of {len(keyids)} key(s) "
            + ", ".join(k[:16] + "…" for k in keyids)
        )
    for role, when in summary.expires.items():
        _console.print(f"  {role} expires {when:%Y-%m-%d %H:%M} UTC")


_ROOT = typer.Option(
    None, "--root", exists=True, dir_okay=False, help="Trusted root metadata file."
)
_FINGERPRINT = typer.Option(
    None, "--root-fingerprint", help="sha256:… from the delivery paperwork."
)


@app.command("sbom")
def sbom(
    paths: list[Path] = typer.Argument(..., help="Bundle folder, ISO file, or all volumes."),
    out: Path = typer.Option(..., "--out", help="New (or empty) folder for the SBOMs."),
    root: Path | None = _ROOT,
    root_fingerprint: str | None = _FINGERPRINT,
) -> None:
    """Write the bundle's CycloneDX SBOM and each image's contents SBOM to --out.

    An image's SBOM lists every Python, Debian and Go package inside it. With --root or
    --root-fingerprint the bundle is verified first; without, each SBOM is only checked
    against the digest the bundle lists.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MediaError(f"{out} exists and is not an empty folder", hint="name a new folder")
    found, trusted = _sboms(paths, root, root_fingerprint)
    for name, data in found.items():
        atomic_write_bytes(out / name, data)
    images = len(found) - 1
    _console.print(f"wrote {out / SBOM_TARGET} and {images} image SBOMs ({trusted})")


@app.command("audit")
def audit(
    paths: list[Path] = typer.Argument(..., help="Bundle folder, ISO file, or all volumes."),
    db: Path = typer.Option(..., "--db", help="OSV database: all.zip, a folder or a .json."),
    root: Path | None = _ROOT,
    root_fingerprint: str | None = _FINGERPRINT,
) -> None:
    """List known vulnerabilities of the packages in the bundle's images, offline.

    Matches every package the image SBOMs list against an OSV database file the site
    carries in (an ecosystem's all.zip, a folder of advisories, or one .json). Exit 1 when
    any package is affected.
    """
    from appliance.bundle.vulns import load_osv
    from appliance.sbom import image_sbom_packages

    found, trusted = _sboms(paths, root, root_fingerprint)
    database = load_osv(db)
    findings: list[Finding] = []
    checked: dict[str, int] = {}
    for name, data in found.items():
        if name == SBOM_TARGET:
            continue
        image = Path(name).name.removesuffix(".cdx.json")
        for package in image_sbom_packages(data):
            checked[package.ecosystem] = checked.get(package.ecosystem, 0) + 1
            findings.extend(database.affecting(image, package))
    counted = ", ".join(f"{n} {kind}" for kind, n in sorted(checked.items())) or "no packages"
    _console.print(
        f"checked {counted} in {len(found) - 1} images against {database.advisories} "
        f"advisories in {db} ({trusted})",
        markup=False,
    )
    if not findings:
        _console.print("no known vulnerabilities", markup=False)
        return
    _console.print(f"{len(findings)} known vulnerabilities:", markup=False)
    for f in sorted(findings, key=lambda f: (f.image, f.package, f.advisory)):
        also = f" ({', '.join(f.aliases)})" if f.aliases else ""
        fixed = f"fixed in {', '.join(f.fixed)}" if f.fixed else "no fixed version"
        summary = f": {f.summary}" if f.summary else ""
        _console.print(
            f"  {f.image}: {f.package} {f.version}  {f.advisory}{also}  {fixed}{summary}",
            markup=False,
        )
    raise typer.Exit(1)


def _anchor(root: Path | None, fingerprint: str | None) -> TrustAnchor | None:
    from appliance.media.verify import TrustAnchor

    if root is not None:
        return TrustAnchor(root=root.read_bytes())
    if fingerprint is not None:
        return TrustAnchor(fingerprint=fingerprint)
    return None


def _sboms(
    paths: list[Path], root: Path | None, fingerprint: str | None
) -> tuple[dict[str, bytes], str]:
    """The bundle's SBOMs, and how far they are to be trusted, in words."""
    from appliance.bundle.inspect import unverified_targets
    from appliance.bundle.sboms import read_sboms
    from appliance.media.verify import verify_bundle

    anchor = _anchor(root, fingerprint)
    if anchor is None:
        reader = open_media(paths)
        return read_sboms(reader, unverified_targets(reader)), (
            "bundle not verified: pass --root-fingerprint to verify it first"
        )
    reader, _partial = open_bundle_media(paths)
    verified = verify_bundle(reader, anchor)
    return read_sboms(
        reader, verified.targets
    ), f"bundle {verified.name} {verified.version} verified"


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**28 else f"{size / 2**20:.1f} MiB"
