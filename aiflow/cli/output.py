"""Printing results in the format the user asked for: table, json, yaml or plain.

Every command takes `-o/--output`. Commands that list or show print rows or an object; commands
that act (start, stop, delete, pause...) print one sentence as `table` or `plain`, and an object
saying what they did as `json` or `yaml`, so a script never cuts text apart.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

FORMATS = ("table", "json", "yaml", "plain")

output_option = click.option("-o", "--output", "fmt", type=click.Choice(FORMATS), default="table",
                             show_default=True, help="Output format.")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def emit(data: Sequence[Mapping[str, Any]] | Mapping[str, Any], fmt: str, columns: Sequence[str] | None = None) -> None:
    """Print rows (a list of mappings) or one object (a mapping)."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    if fmt == "yaml":
        import yaml
        click.echo(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False).rstrip())
        return
    rows = [data] if isinstance(data, Mapping) else list(data)
    cols = list(columns or (rows[0].keys() if rows else ()))
    if fmt == "plain":
        for row in rows:
            click.echo("\t".join(_cell(row.get(c)) for c in cols))
        return
    if isinstance(data, Mapping):
        width = max((len(k) for k in cols), default=0)
        for c in cols:
            click.echo(f"{c.ljust(width)}  {_cell(data.get(c))}")
        return
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    if _aligned(cols, cells):
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
    for c in cols:
        table.add_column(c)
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c))) for c in cols))  # Text: no markup in data, e.g. "[task_status_change]"
    console = Console()
    if not console.is_terminal:  # piped: never cut a cell to fit an imagined screen width
        console = Console(width=100_000)
    console.print(table)


def _aligned(cols: Sequence[str], cells: Sequence[Sequence[str]]) -> bool:
    """Print the table as rich prints it (below) when that is plain padding: every cell one line of printable
    ASCII and the table as wide as the screen at most (a pipe has no width). It saves loading rich and its
    layout, a tenth of a second for a hundred rows. False, printing nothing, when rich is needed (to wrap
    cells to the screen, to measure wide characters, to lay out lines)."""
    if not all(c.isascii() and c.isprintable() for line in (cols, *cells) for c in line):
        return False
    widths = [max(len(col), *(len(line[i]) for line in cells)) for i, col in enumerate(cols)]
    terminal = sys.stdout.isatty()
    if terminal and sum(widths) + 2 * (len(widths) - 1) > shutil.get_terminal_size().columns:
        return False
    click.echo(click.style("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)), bold=True))
    for line in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    return True


def emit_result(message: str, data: Mapping[str, Any], fmt: str) -> None:
    """What an acting command did: `message` for people (table, plain), `data` for scripts (json, yaml)."""
    if fmt in ("json", "yaml"):
        emit(data, fmt)
    else:
        click.echo(message)
