"""`aiflow connector list` and `aiflow connector run kafka-topic | webhook | folder`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import click
import yaml

from aiflow.cli.common import apply_log_format, load_config, service_logging, service_output
from aiflow.cli.output import emit, output_option
from aiflow.config import read_token
from aiflow.errors import ConfigError

KINDS = {
    "kafka-topic": "one event per record of an existing Kafka topic (JSON, Avro, Confluent Avro, bytes; Debezium)",
    "webhook": "POST /events (and /events/raw) over HTTP, with a bearer token",
    "folder": "a new, complete file under a folder; the event's value is its path",
}


@click.group("connector")
def group() -> None:
    """Bridges that turn other systems' data into events."""


@group.command("list")
@output_option
def list_(fmt: str) -> None:
    """The built-in connector kinds."""
    emit([{"kind": k, "what": v} for k, v in KINDS.items()], fmt)


@group.group("run")
def run() -> None:
    """Run a connector in the foreground until Ctrl-C."""


def _from_file(path: str | None, allowed: set[str]) -> dict[str, Any]:
    if not path:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of option names to values")
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(allowed))}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _merge(file_values: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """Flags given on the command line win over the file."""
    merged = dict(file_values)
    merged.update({k: v for k, v in flags.items() if v not in (None, (), False)})
    return merged


def _filters(pairs: Any) -> dict[str, str]:
    if isinstance(pairs, dict):
        return {str(k): str(v) for k, v in pairs.items()}
    result = {}
    for pair in pairs or ():
        field, sep, value = str(pair).partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not FIELD=VALUE", param_hint="--filter")
        result[field] = value
    return result


def _serve(name: str, target: Any, log_format: str | None, fmt: str) -> None:
    from aiflow.scheduler.process import run_services

    apply_log_format(log_format, fmt)
    service_logging()
    run_services(f"connector {name}", [(name, target)], threading.Event())


mapping_options = [
    click.option("--key", "key", help="Event key: a template over fields ('orders.{status}'), 'header:NAME' or "
                                     "'record-key'."),
    click.option("--value-field", help="The field whose value is the event's value (default: the whole record)."),
    click.option("--event-namespace", help="Namespace of the events (default: the configured one)."),
    click.option("--filter", "filters", multiple=True, metavar="FIELD=VALUE", help="Only records with this value."),
    click.option("--debezium", is_flag=True, default=None,
                 help="Unwrap Debezium change events ({op}, {source.table})."),
]


config_file_option = click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                                  help="A YAML file of these options (flags win over it).")


def with_mapping_options(f: Any) -> Any:
    for option in reversed(mapping_options):
        f = option(f)
    return f


def _mapping(values: dict[str, Any], namespace: str, fmt: str = "json") -> Any:
    from aiflow.connectors.mapping import Mapping

    if not values.get("key"):
        raise click.UsageError("--key is required (a template such as 'orders.{status}')")
    return Mapping(key=values["key"], value=values.get("value_field"),
                   namespace=values.get("event_namespace") or namespace, filters=_filters(values.get("filters")),
                   format=values.get("format") or fmt, avro_schema=values.get("avro_schema"),
                   debezium=bool(values.get("debezium")))


@run.command("kafka-topic")
@click.option("--topic", help="The topic to bridge.")
@click.option("--format", type=click.Choice(["json", "avro", "confluent-avro", "bytes"]), default=None,
              help="How its values are encoded (default json).")
@click.option("--avro-schema", type=click.Path(exists=True, dir_okay=False), help="The writer's Avro schema.")
@click.option("--name", help="Bridge name: its consumer group is <prefix>-bridge-<name> (default: the topic).")
@config_file_option
@with_mapping_options
@service_output
def run_kafka_topic(config_file: str | None, log_format: str | None, fmt: str, **flags: Any) -> None:
    """Publish one event per record of --topic, exactly once."""
    from aiflow.connectors.kafka_topic import TopicBridge

    values = _merge(_from_file(config_file, {"topic", "format", "avro-schema", "name", "key", "value-field",
                                             "event-namespace", "filters", "debezium"}), flags)
    if not values.get("topic"):
        raise click.UsageError("--topic is required")
    config = load_config()
    bridge = TopicBridge(config, values["topic"], _mapping(values, config.namespace), values.get("name"))
    click.echo(f"Bridging {values['topic']} to {config.topic_prefix}.events; Ctrl-C stops.", err=True)
    _serve("bridge", bridge.run, log_format, fmt)


@run.command("webhook")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8787).")
@click.option("--token", default=None, help="Bearer token required of callers. Visible to `ps`: prefer "
              "$AIFLOW_WEBHOOK_TOKEN, --token-file or `token` in the --config file.")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="A file holding the bearer token required of callers (default: $AIFLOW_WEBHOOK_TOKEN). "
                   "The token is never given on the command line, where `ps` would show it.")
@config_file_option
@with_mapping_options
@service_output
def run_webhook(config_file: str | None, token_file: str | None, log_format: str | None, fmt: str,
                **flags: Any) -> None:
    """Accept events over HTTP: POST /events {key, value, namespace}; POST /events/raw with a mapping."""
    from aiflow.connectors.webhook import WebhookServer

    values = _merge(_from_file(config_file, {"host", "port", "token", "token-file", "key", "value-field",
                                             "event-namespace", "filters", "debezium"}), flags)
    if flags.get("token"):
        click.echo("warning: --token is visible to every user of this machine (ps); use $AIFLOW_WEBHOOK_TOKEN or "
                   "--token-file", err=True)
    token_path = token_file or values.get("token-file")
    token = read_token("AIFLOW_WEBHOOK_TOKEN", token_path, "webhook") if token_path or not values.get("token") \
        else values.get("token")
    config = load_config()
    mapping = _mapping(values, config.namespace) if values.get("key") else None
    server = WebhookServer(config, host=values.get("host") or "127.0.0.1", port=int(values.get("port") or 8787),
                           token=token, mapping=mapping)
    click.echo(f"Webhook on http://{values.get('host') or '127.0.0.1'}:{server.port}/events; Ctrl-C stops.", err=True)
    _serve("webhook", server.serve, log_format, fmt)


@run.command("folder")
@click.option("--path", "folder", type=click.Path(file_okay=False), help="The folder to watch.")
@click.option("--pattern", default=None, help="Glob of the files to announce (default '*').")
@click.option("--event-key", help="Key of the events.")
@click.option("--event-namespace", help="Namespace of the events (default: the configured one).")
@click.option("--interval", type=float, default=None, help="Seconds between polls (default 1).")
@click.option("--name", help="Watcher name: its memory of announced files (default: the folder's name).")
@config_file_option
@service_output
def run_folder(config_file: str | None, log_format: str | None, fmt: str, **flags: Any) -> None:
    """Send an event for each new, complete file under --path."""
    from aiflow.connectors.folder import FolderWatcher

    values = _merge(_from_file(config_file, {"path", "pattern", "event-key", "event-namespace", "interval",
                                             "name"}), flags)
    if not values.get("folder") and not values.get("path"):
        raise click.UsageError("--path is required")
    if not values.get("event_key"):
        raise click.UsageError("--event-key is required")
    folder = Path(values.get("folder") or values["path"])
    if not folder.is_dir():
        raise ConfigError(f"--path {folder}: no such folder")
    watcher = FolderWatcher(load_config(), folder, values["event_key"], values.get("pattern") or "*",
                            values.get("name"), values.get("event_namespace"), float(values.get("interval") or 1.0))
    click.echo(f"Watching {folder}; Ctrl-C stops.", err=True)
    _serve("folder", watcher.run, log_format, fmt)
