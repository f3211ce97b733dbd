"""Tables print the same whether aiflow lays them out itself (plain padding) or with rich (wide characters,
several lines in a cell, a screen too narrow)."""

from __future__ import annotations

import io
from typing import Any

import click
from click.testing import CliRunner
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aiflow.cli.output import _cell, emit

COLUMNS = ["id", "status", "message", "n"]
ROWS: list[dict[str, Any]] = [
    {"id": "7c5cf81a3ef5", "status": "SUCCESS", "message": "", "n": 1},
    {"id": "c7", "status": None, "message": "rule 1 of world (START) on [task_status_change] x", "n": 12},
    {"id": "d556a2967969", "status": "FAILED", "message": {"a": [1, 2]}, "n": None},
]


def printed(rows: list[dict[str, Any]]) -> str:
    @click.command()
    def show() -> None:
        emit(rows, "table", COLUMNS)

    return CliRunner().invoke(show).output


def by_rich(rows: list[dict[str, Any]]) -> str:
    """What emit printed with rich for every table, before it padded plain ones itself."""
    table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
    for c in COLUMNS:
        table.add_column(c)
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c))) for c in COLUMNS))
    out = io.StringIO()
    Console(file=out, width=100_000).print(table)
    return out.getvalue()


def test_a_plain_table_is_padded_as_rich_pads_it() -> None:
    assert printed(ROWS) == by_rich(ROWS)


def test_cells_rich_must_lay_out_still_go_to_rich() -> None:
    for odd in ("two\nlines", "wide 表格", "tab\there"):
        rows = [*ROWS, {"id": "x", "status": "RUNNING", "message": odd, "n": 0}]
        assert printed(rows) == by_rich(rows)
