"""`aiflow config init | list | get-value`."""

from __future__ import annotations

import click

from aiflow.cli.common import load_config
from aiflow.cli.output import emit, output_option
from aiflow.config import CONFIG_FILE, KEYS, default_file_text, default_home
from aiflow.errors import ConfigError


@click.group("config")
def group() -> None:
    """Show and create the configuration ($AIFLOW_HOME/aiflow.yaml)."""


@group.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing aiflow.yaml.")
def init(force: bool) -> None:
    """Write a commented aiflow.yaml with every key at its default."""
    home = default_home()
    path = home / CONFIG_FILE
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to overwrite it")
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(default_file_text())
    click.echo(f"Wrote {path}")


@group.command("list")
@output_option
def list_(fmt: str) -> None:
    """Every key with its value, where the value comes from, and its environment variable."""
    config = load_config()
    rows = [{"key": k.name, "value": config.values[k.name], "source": config.sources[k.name], "env": k.env}
            for k in KEYS]
    rows += [{"key": f"kafka.properties.{p}", "value": "****" if _secret(p) else v, "source": "file/env",
              "env": "AIFLOW_KAFKA_PROPERTY_" + p.upper().replace(".", "_")}
             for p, v in sorted(config.kafka_properties.items())]
    emit(rows, fmt, ["key", "value", "source", "env"])


def _secret(prop: str) -> bool:
    return any(word in prop for word in ("password", "secret", "token"))


@group.command("get-value")
@click.argument("key")
def get_value(key: str) -> None:
    """Print the value of one KEY (e.g. kafka.bootstrap)."""
    value = load_config().get(key)
    click.echo("" if value is None else value)
