"""`aiflow namespace add | list | delete`."""

from __future__ import annotations

import click

from aiflow.cli.common import load_config
from aiflow.cli.output import emit, emit_result, output_option


@click.group("namespace")
def group() -> None:
    """Namespaces: workflows and events of one namespace never see another's."""


def _properties(pairs: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--property")
        result[key] = value
    return result


@group.command("add")
@click.argument("name")
@click.option("-p", "--property", "props", multiple=True, metavar="KEY=VALUE", help="A property (repeatable).")
@output_option
def add(name: str, props: tuple[str, ...], fmt: str) -> None:
    """Create namespace NAME."""
    from aiflow import ops

    info = ops.add_namespace(name, _properties(props), config=load_config())
    if fmt == "table":
        click.echo(f"Namespace: {info.name}, added.")
    else:
        emit(info.to_dict(), fmt)


@group.command("list")
@output_option
def list_(fmt: str) -> None:
    """Every namespace."""
    from aiflow import ops

    emit([n.to_dict() for n in ops.list_namespaces(config=load_config())], fmt, ["name", "properties", "create_time"])


@group.command("delete")
@click.argument("name")
@output_option
def delete(name: str, fmt: str) -> None:
    """Delete namespace NAME; it must hold no workflows."""
    from aiflow import ops

    ops.delete_namespace(name, config=load_config())
    emit_result(f"Namespace: {name}, deleted.", {"name": name, "deleted": True}, fmt)
