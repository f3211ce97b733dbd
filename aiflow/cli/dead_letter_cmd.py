"""`aiflow dead-letter list`: what the services could not read, and why."""

from __future__ import annotations

import click

from aiflow.cli.common import load_config
from aiflow.cli.output import emit, output_option

COLUMNS = ["offset", "time", "source", "reporter", "reason", "key", "value_bytes"]


@click.group("dead-letter")
def group() -> None:
    """Records the services could not read or apply (the dead-letter topic)."""


@group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Show the newest LIMIT dead letters.")
@output_option
def list_(limit: int, fmt: str) -> None:
    """Dead letters, oldest first: where each was read (topic/partition/offset), which service found it
    and why. Reading them writes nothing."""
    from aiflow.kafka.readers import read_dead_letters

    emit([d.to_dict() for d in read_dead_letters(load_config(), limit)], fmt, COLUMNS)
