"""The CLI's promises to scripts, checked on the whole command tree without a broker."""

from __future__ import annotations

import json
import logging
import sys

import click
import pytest
from click.testing import CliRunner

from aiflow import __version__
from aiflow.cli.main import cli
from aiflow.process import JsonLogFormatter, log_formatter


def _subcommands(group: click.Group) -> list[tuple[str, click.Command]]:
    """A group's commands by name, through click's own lookup (the root imports a command's module on asking)."""
    ctx = click.Context(group)
    found = [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx)]
    return [(name, sub) for name, sub in found if sub is not None]


def _commands(command: click.Command, path: tuple[str, ...] = ("aiflow",)) -> list[tuple[str, click.Command]]:
    """Every command a user can run: the leaves, and groups that run by themselves (`aiflow standalone`)."""
    found: list[tuple[str, click.Command]] = []
    if not isinstance(command, click.Group) or command.invoke_without_command:
        found.append((" ".join(path), command))
    if isinstance(command, click.Group):
        for name, sub in _subcommands(command):
            found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(cli)


def test_the_tree_is_walked() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"aiflow standalone", "aiflow task-execution start", "aiflow workflow-trigger delete-all",
            "aiflow event count", "aiflow version"} <= names
    assert len(names) > 60


def _all_commands(command: click.Command, path: tuple[str, ...] = ("aiflow",)) -> list[tuple[str, click.Command]]:
    found = [(" ".join(path), command)]
    if isinstance(command, click.Group):
        for name, sub in _subcommands(command):
            found += _all_commands(sub, (*path, name))
    return found


@pytest.mark.parametrize(("name", "command"), _all_commands(cli), ids=[n for n, _ in _all_commands(cli)])
def test_no_command_or_group_has_an_empty_help(name: str, command: click.Command) -> None:
    with click.Context(command, info_name=name) as ctx:
        assert (command.help or "").strip(), f"`{name} --help` says nothing"
        assert command.get_short_help_str(), name
        assert command.get_help(ctx).count("\n") > 2


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_takes_output_json_and_yaml(name: str, command: click.Command) -> None:
    output = [p for p in command.params if isinstance(p, click.Option) and "--output" in p.opts]
    assert output, f"`{name}` has no -o/--output"
    assert isinstance(output[0].type, click.Choice) and {"json", "yaml"} <= set(output[0].type.choices)


def test_version_command_and_option() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.strip() == f"aiflow, version {__version__}"
    plain = runner.invoke(cli, ["version"])
    assert plain.exit_code == 0 and plain.output.startswith(f"aiflow {__version__} (Python ")
    data = json.loads(runner.invoke(cli, ["version", "-o", "json"]).output)
    assert data["aiflow"] == __version__ and data["python"] == ".".join(map(str, sys.version_info[:3]))
    assert data["confluent_kafka"] and data["librdkafka"]


def test_usage_mistakes_exit_2_and_timeout_needs_wait() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["workflow-execution", "start", "w", "--timeout", "3"]).exit_code == 2
    assert runner.invoke(cli, ["workflow-execution", "show", "1", "--timeout", "3"]).exit_code == 2
    assert runner.invoke(cli, ["workflow-execution", "start"]).exit_code == 2
    assert runner.invoke(cli, ["event", "count", "--begin-offset", "-1"]).exit_code == 2


def test_json_log_lines_carry_time_level_logger_message_and_exception() -> None:
    record = logging.LogRecord("aiflow.scheduler", logging.ERROR, __file__, 1, "try %s failed", ("t1",), None)
    record.created = 1_764_633_600.5  # 2025-12-02T00:00:00.500Z
    entry = json.loads(JsonLogFormatter().format(record))
    assert entry["time"] == "2025-12-02T00:00:00.500Z"
    assert (entry["level"], entry["logger"], entry["message"]) == ("ERROR", "aiflow.scheduler", "try t1 failed")
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonLogFormatter().format(record))["exception"]


def test_text_log_lines_have_timestamps_and_the_format_comes_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    record = logging.LogRecord("aiflow.worker", logging.INFO, __file__, 1, "hello", (), None)
    monkeypatch.delenv("AIFLOW_LOG_FORMAT", raising=False)
    line = log_formatter().format(record)
    assert line.endswith(" INFO aiflow.worker: hello") and line[:4].isdigit()
    monkeypatch.setenv("AIFLOW_LOG_FORMAT", "json")
    assert isinstance(log_formatter(), JsonLogFormatter)
    monkeypatch.setenv("AIFLOW_LOG_FORMAT", "xml")
    with pytest.raises(Exception, match="log format 'xml'"):
        log_formatter()
