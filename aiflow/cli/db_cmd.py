"""`aiflow db init | upgrade | downgrade | reset`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from aiflow.cli.common import load_config

if TYPE_CHECKING:
    from aiflow.store.db import Store


@click.group("db")
def group() -> None:
    """The metadata database (db.uri): create and migrate its schema."""


def _store() -> Store:
    from aiflow.store.db import Store

    return Store(load_config())


@group.command("init")
def init() -> None:
    """Create the schema (and the 'default' namespace) in an empty database; upgrade an older one."""
    store = _store()
    store.upgrade()
    click.echo(f"Database ready at revision {store.current_revision()}.")


@group.command("upgrade")
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Migrate the schema up to REVISION (default: the newest)."""
    store = _store()
    store.upgrade(revision)
    click.echo(f"Database at revision {store.current_revision()}.")


@group.command("downgrade")
@click.argument("revision", default="-1")
def downgrade(revision: str) -> None:
    """Migrate the schema down to REVISION (default: one step; 'base' removes every table)."""
    store = _store()
    store.downgrade(revision)
    click.echo(f"Database at revision {store.current_revision() or 'base (empty)'}.")


@group.command("reset")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def reset(yes: bool) -> None:
    """Delete every table and its data, and create the schema again."""
    store = _store()
    if not yes:
        click.confirm(f"Delete all aiflow data in {store.engine.url.render_as_string(hide_password=True)}?",
                      abort=True)
    store.reset()
    click.echo("Database reset.")


@group.command("rebuild")
def rebuild() -> None:
    """Replay the workflows and state topics into an empty database."""
    from aiflow.store.rebuild import rebuild as run_rebuild

    report = run_rebuild(load_config())
    click.echo(f"Rebuilt {report.workflows} workflow(s) and {report.executions} execution(s) from Kafka.")
