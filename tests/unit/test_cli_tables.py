"""Tables printed into a pipe or a file keep every cell whole (`make demo`'s log showed the
components table folded at 80 columns: "ziti-co / ntrolle / r"); a terminal still gets
them fitted to its width."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from appliance.cli import components as components_cli
from appliance.cli._tables import print_table
from appliance.components.build import BuildReport, ComponentResult
from appliance.components.lock import FileLock

SOURCE = "v2.0.3, supplied from the folder /srv/appliance/shared/openziti-programs (checked)"


def _table() -> Table:
    table = Table(title="Components", title_justify="left")
    for column in ("component", "version", "result", "digest", "source"):
        table.add_column(column, overflow="fold")
    table.add_row("ziti-controller", "2.0.3", "built (base reused)", "sha256:" + "ab" * 32, SOURCE)
    return table


def _words(text: str) -> set[str]:
    return set(re.findall(r"[^\s│┃]+", text))


def test_into_a_pipe_no_word_is_cut() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, highlight=False)
    assert not console.is_terminal
    print_table(console, _table())
    printed = out.getvalue()
    for word in _words(f"ziti-controller built (base reused) sha256:{'ab' * 32} {SOURCE}"):
        assert word in _words(printed), f"{word!r} is cut in:\n{printed}"
    # Each cell on one line: grep finds the whole row.
    row = next(line for line in printed.splitlines() if "ziti-controller" in line)
    assert SOURCE in row and "built (base reused)" in row


def test_a_terminal_still_gets_the_table_fitted_to_its_width() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    print_table(console, _table())
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80


def test_a_narrow_table_is_drawn_as_before() -> None:
    def drawn(through_print_table: bool) -> str:
        out = io.StringIO()
        console = Console(file=out, width=80, highlight=False)
        table = Table("host", "check", "result")
        table.add_row("gw1", "llm-gateway answers", "ok")
        if through_print_table:
            print_table(console, table)
        else:
            console.print(table)
        return out.getvalue()

    assert drawn(True) == drawn(False)


def test_the_components_table_in_a_log_names_each_component_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(components_cli, "_console", Console(file=out, width=80, highlight=False))
    model = FileLock(
        name="tiny-model",
        version="2026.11.1",
        source="build/models/tiny (a folder beside the definition, made by `make demo`)",
        path="build/models/tiny",
        sha256="cd" * 32,
        size=4_000_000,
    )
    results = [
        ComponentResult("tiny-model", "2026.11.1", "cached", 0.4, files=model),
        ComponentResult("ziti-controller", "2.0.3", "failed", 12.0),
    ]
    components_cli._print_report(BuildReport(tmp_path / "components.lock.json", results))
    printed = out.getvalue()
    for word in _words(f"tiny-model ziti-controller 2026.11.1 {model.source}"):
        assert word in _words(printed), f"{word!r} is cut in:\n{printed}"
