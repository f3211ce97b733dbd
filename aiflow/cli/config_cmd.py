"""`aiflow config init | list | get-value`."""

from __future__ import annotations

import click

from aiflow.cli.common import load_config
from aiflow.cli.output import emit, emit_result, output_option
from aiflow.config import CONFIG_FILE, KEYS, default_file_text, default_home, is_secret_name, mask_uri
from aiflow.errors import ConfigError
from aiflow.process import private_home


@click.group("config")
def group() -> None:
    """Show and create the configuration ($AIFLOW_HOME/aiflow.yaml)."""


@group.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing aiflow.yaml.")
@output_option
def init(force: bool, fmt: str) -> None:
    """Write a commented aiflow.yaml with every key at its default."""
    home = default_home()
    path = home / CONFIG_FILE
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to overwrite it")
    private_home(home)
    path.write_text(default_file_text())
    emit_result(f"Wrote {path}", {"path": str(path)}, fmt)


@group.command("list")
@output_option
def list_(fmt: str) -> None:
    """Every key with its value, where the value comes from, and its environment variable."""
    config = load_config()
    rows = [{"key": k.name, "value": mask_uri(v) if isinstance(v := config.values[k.name], str) else v,
             "source": config.sources[k.name], "env": k.env} for k in KEYS]
    rows += [{"key": f"kafka.properties.{p}", "value": "****" if is_secret_name(p) else v, "source": "file/env",
              "env": "AIFLOW_KAFKA_PROPERTY_" + p.upper().replace(".", "_")}
             for p, v in sorted(config.kafka_properties.items())]
    emit(rows, fmt, ["key", "value", "source", "env"])


@group.command("get-value")
@click.argument("key")
@output_option
def get_value(key: str, fmt: str) -> None:
    """Print the value of one KEY (e.g. kafka.bootstrap)."""
    value = load_config().get(key)  # asked for by name: shown as it is
    emit_result("" if value is None else str(value), {"key": key, "value": value}, fmt)
