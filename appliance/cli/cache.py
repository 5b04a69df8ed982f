"""``appliance cache``: the build machine's cache of heavy, keyed outputs."""

from __future__ import annotations

import typer
from rich.console import Console

from appliance.settings import cache_dir

__all__ = ["app"]

app = typer.Typer(help="The build cache ($APPLIANCE_CACHE).", no_args_is_help=True)
_console = Console(highlight=False, soft_wrap=True)


@app.command("prune")
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; remove nothing."),
) -> None:
    """Remove virtualenvs, wheelhouses, root filesystems, models, Go programs and images
    that no current build, bundle definition or lab uses; say how much that freed.

    What the latest build of each output folder used, the latest installer wheelhouse of
    each definition, every existing lab's root filesystem and this checkout's virtualenv
    are kept. Refused while a build or a lab start is using the cache.
    """
    from appliance.prune import apply, human, tree_bytes

    cache = cache_dir()
    plan = apply(lambda line: _console.print(line, markup=False), dry_run=dry_run)
    images = sum(1 for item in plan.remove if item.image is not None)
    if dry_run:
        _console.print(
            f"would free {human(plan.freed)} of {cache} ({human(plan.cache_bytes)} now)"
            f" and remove {images} images; {plan.kept} entries in use are kept",
            markup=False,
        )
        return
    after = tree_bytes(cache)
    _console.print(
        f"freed {human(plan.cache_bytes - after)} of {cache}: {human(plan.cache_bytes)} before,"
        f" {human(after)} after; {images} images removed; {plan.kept} entries in use kept",
        markup=False,
    )
