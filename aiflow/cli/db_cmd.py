"""`aiflow db init | upgrade | downgrade | reset`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from aiflow.cli.common import load_config
from aiflow.cli.output import emit_result, output_option

if TYPE_CHECKING:
    from aiflow.store.db import Store


@click.group("db")
def group() -> None:
    """The metadata database (db.uri): create and migrate its schema."""


def _store() -> Store:
    from aiflow.store.db import Store

    return Store(load_config())


@group.command("init")
@output_option
def init(fmt: str) -> None:
    """Create the schema (and the 'default' namespace) in an empty database; upgrade an older one."""
    store = _store()
    store.upgrade()
    revision = store.current_revision()
    emit_result(f"Database ready at revision {revision}.", {"revision": revision}, fmt)


@group.command("upgrade")
@click.argument("revision", default="head")
@output_option
def upgrade(revision: str, fmt: str) -> None:
    """Migrate the schema up to REVISION (default: the newest)."""
    store = _store()
    store.upgrade(revision)
    now = store.current_revision()
    emit_result(f"Database at revision {now}.", {"revision": now}, fmt)


@group.command("downgrade")
@click.argument("revision", default="-1")
@output_option
def downgrade(revision: str, fmt: str) -> None:
    """Migrate the schema down to REVISION (default: one step; 'base' removes every table)."""
    store = _store()
    store.downgrade(revision)
    now = store.current_revision()
    emit_result(f"Database at revision {now or 'base (empty)'}.", {"revision": now}, fmt)


@group.command("reset")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@output_option
def reset(yes: bool, fmt: str) -> None:
    """Delete every table and its data, and create the schema again."""
    store = _store()
    if not yes:
        click.confirm(f"Delete all aiflow data in {store.engine.url.render_as_string(hide_password=True)}?",
                      abort=True)
    store.reset()
    emit_result("Database reset.", {"reset": True, "revision": store.current_revision()}, fmt)


@group.command("rebuild")
@output_option
def rebuild(fmt: str) -> None:
    """Replay the workflows and state topics into an empty database."""
    from aiflow.store.rebuild import rebuild as run_rebuild

    report = run_rebuild(load_config())
    emit_result(f"Rebuilt {report.workflows} workflow(s) and {report.executions} execution(s) from Kafka.",
                {"workflows": report.workflows, "executions": report.executions}, fmt)
