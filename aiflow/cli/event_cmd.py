"""`aiflow event send | list | follow`."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import click

from aiflow.cli.common import end_at_once, load_config, namespace_option
from aiflow.cli.output import emit, emit_result, output_option
from aiflow.errors import AIFlowError

COLUMNS = ["create_time", "namespace", "key", "value", "sender", "execution_id", "partition", "offset"]
_RELATIVE = re.compile(r"^(\d+)\s*(s|m|h|d)$")


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (UTC when it has no zone) or a duration back from now: 30s, 10m, 2h, 1d."""
    match = _RELATIVE.match(text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(timezone.utc) - timedelta(**{unit: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither an ISO time (2026-11-25T10:00) nor a duration (10m)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class TimeType(click.ParamType):
    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


@click.group("event")
def group() -> None:
    """Send and read events."""


@group.command("send")
@click.argument("key")
@click.argument("value", required=False)
@namespace_option
@output_option
def send(key: str, value: str | None, namespace: str | None, fmt: str) -> None:
    """Send an event with KEY (and VALUE); prints it once it is stored."""
    from aiflow.events import EventClient

    end_at_once()
    with EventClient(load_config(), namespace=namespace, sender="cli") as client:
        event = client.send_event(key, value)
    if fmt == "table":
        click.echo(f"Event {event.key!r} sent to namespace {event.namespace!r} "
                   f"(partition {event.partition}, offset {event.offset}).")
    else:
        emit(event.to_dict(), fmt)


def _filters(command: Callable[..., None]) -> Callable[..., None]:
    """The options that choose events, shared by `list` and `count`."""
    for option in reversed([
        click.option("--key", default=None, help="Only events with this key."),
        click.option("--sender", default=None, help="Only events sent by this sender (the CLI sends as 'cli', a "
                     "task as '<workflow>/<execution>/<task>/<try>')."),
        click.option("--since", type=TimeType(), default=None, help="From this time: ISO time or a duration (10m)."),
        click.option("--until", type=TimeType(), default=None, help="Before this time."),
        click.option("--begin-offset", type=click.IntRange(min=0), default=None,
                     help="From this offset of the events topic (in each of its partitions) on."),
    ]):
        command = option(command)
    return command


@group.command("list")
@_filters
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N.")
@namespace_option
@output_option
def list_(key: str | None, sender: str | None, since: datetime | None, until: datetime | None,
          begin_offset: int | None, limit: int | None, namespace: str | None, fmt: str) -> None:
    """Stored events of a namespace, oldest first."""
    from aiflow.events import EventClient

    with EventClient(load_config(), namespace=namespace) as client:
        events = client.list_events(key=key, since=since, until=until, limit=limit, sender=sender,
                                    begin_offset=begin_offset)
    emit([e.to_dict() for e in events], fmt, COLUMNS)


@group.command("count")
@_filters
@namespace_option
@output_option
def count(key: str | None, sender: str | None, since: datetime | None, until: datetime | None,
          begin_offset: int | None, namespace: str | None, fmt: str) -> None:
    """How many stored events of a namespace match the filters."""
    from aiflow.events import EventClient

    config = load_config()
    with EventClient(config, namespace=namespace) as client:
        found = client.count_events(key=key, since=since, until=until, sender=sender, begin_offset=begin_offset)
    emit_result(str(found), {"namespace": namespace or config.namespace, "count": found}, fmt)


@group.command("follow")
@click.option("--key", default=None, help="Only events with this key.")
@click.option("--since", type=TimeType(), default=None, help="Show stored events from this time first.")
@namespace_option
@output_option
def follow(key: str | None, since: datetime | None, namespace: str | None, fmt: str) -> None:
    """Print events as they arrive, until Ctrl-C."""
    import json

    from aiflow.events import EventClient

    start = since or datetime.now(timezone.utc)
    try:
        with EventClient(load_config(), namespace=namespace) as client:
            for event in client.iter_events(key=key, since=start, follow=True):
                row = event.to_dict()
                if fmt == "json":
                    click.echo(json.dumps(row, default=str))
                elif fmt == "table":
                    click.echo(f"{row['create_time']}  {row['namespace']}  {row['key']}  {row['value'] or ''}")
                else:
                    emit([row], fmt, COLUMNS)
    except KeyboardInterrupt:
        pass
    except AIFlowError:
        raise
