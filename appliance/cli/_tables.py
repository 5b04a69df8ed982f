"""Tables on the command line: fitted to a terminal, whole in a pipe or a file.

A terminal has a width and rich fits a table to it. A pipe or a file has none: rich then
assumes 80 columns (or the width of whatever terminal stdin or stderr is) and folds cells
mid-word, so that `make demo`'s log showed "ziti-co / ntrolle / r". There the table is
drawn as wide as its content needs, every cell on one line, for a reader of the log and
for grep.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

__all__ = ["WIDEST", "print_table"]

#: The widest a table is drawn into a pipe or a file. Past it, cells wrap again.
WIDEST = 10_000


def print_table(console: Console, table: Table) -> None:
    """Print ``table``: fitted to a terminal; into a pipe or file, at its natural width."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(WIDEST), table).maximum
    table.width = natural
    console.print(table, crop=False)
