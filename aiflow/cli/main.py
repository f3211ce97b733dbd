"""The `aiflow` command. Parsing and printing only: the work is done by the modules it calls."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from typing import Any, NoReturn

import click

from aiflow import __version__
from aiflow.cli.output import emit_result, output_option
from aiflow.errors import AIFlowError

# Every command but `version`, by name: the module that defines it and the object's name there. A module is
# imported when its command runs (or when help or completion lists the commands), so `aiflow workflow-execution
# list` loads neither the broker's launcher nor the web server's nor the Kafka client.
COMMANDS: dict[str, str] = {
    "standalone": "aiflow.cli.standalone_cmd:group",
    "config": "aiflow.cli.config_cmd:group",
    "broker": "aiflow.cli.broker_cmd:group",
    "topics": "aiflow.cli.topics_cmd:group",
    "db": "aiflow.cli.db_cmd:group",
    "event": "aiflow.cli.event_cmd:group",
    "dead-letter": "aiflow.cli.dead_letter_cmd:group",
    "namespace": "aiflow.cli.namespace_cmd:group",
    "workflow": "aiflow.cli.workflow_cmd:group",
    "connector": "aiflow.cli.connector_cmd:group",
    "webserver": "aiflow.cli.webserver_cmd:group",
    "workflow-snapshot": "aiflow.cli.workflow_cmd:snapshot_group",
    "workflow-execution": "aiflow.cli.execution_cmd:execution_group",
    "task-execution": "aiflow.cli.execution_cmd:task_group",
    "workflow-trigger": "aiflow.cli.trigger_cmd:trigger_group",
    "workflow-schedule": "aiflow.cli.trigger_cmd:schedule_group",
    "scheduler": "aiflow.cli.service_cmd:scheduler_group",
    "worker": "aiflow.cli.service_cmd:worker_group",
    "status": "aiflow.cli.status_cmd:status",
}


class AIFlowGroup(click.Group):
    """The root command: loads the module of a subcommand when it is asked for (COMMANDS), and turns
    aiflow's errors into one line on stderr and exit code 1, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in COMMANDS:
            module, _, attr = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command) and command.name == cmd_name, COMMANDS[cmd_name]
            self.add_command(command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AIFlowError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            kafka = sys.modules.get("confluent_kafka")  # not loaded: the error cannot be one of its own
            if kafka is not None and isinstance(exc, kafka.KafkaException):
                raise click.ClickException(f"Kafka: {exc.args[0]}") from None
            raise


@click.group(cls=AIFlowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="aiflow")
def cli() -> None:
    """Event-driven workflows for machine-learning and data pipelines, on Apache Kafka."""


@cli.command("version")
@output_option
def version(fmt: str) -> None:
    """The versions of aiflow, Python, confluent-kafka and librdkafka."""
    import platform

    import confluent_kafka

    data = {"aiflow": __version__, "python": platform.python_version(),
            "confluent_kafka": confluent_kafka.__version__, "librdkafka": confluent_kafka.libversion()[0]}
    emit_result(f"aiflow {data['aiflow']} (Python {data['python']}, confluent-kafka {data['confluent_kafka']}, "
                f"librdkafka {data['librdkafka']})", data, fmt)


def main() -> None:
    from aiflow.process import log_formatter

    handler = logging.StreamHandler()
    try:
        handler.setFormatter(log_formatter())
    except AIFlowError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    logging.basicConfig(level=os.environ.get("AIFLOW_LOG_LEVEL", "WARNING").upper(), handlers=[handler])
    if "AIFLOW_LOG_LEVEL" not in os.environ:
        # librdkafka retries transient broker errors by itself; say so only when asked. A command that
        # cannot reach Kafka says so in its own one-line error.
        logging.getLogger("aiflow.librdkafka").setLevel(logging.CRITICAL)
        logging.getLogger("aiflow.kafka").setLevel(logging.ERROR)
    from aiflow.cli import common

    common.end_normally()  # until the command asks otherwise (a caller may have run one in this process before)
    try:
        cli.main(prog_name="aiflow")
    except SystemExit as done:  # click ends every command so, with its exit code
        if common.ends_at_once():
            end_now(done.code)
        raise


def end_now(code: Any) -> NoReturn:
    """End the process with `code` (as sys.exit takes it) once its output and log lines are flushed, skipping the
    interpreter's teardown (see aiflow.cli.common.end_at_once); a normal exit if a thread that is not a daemon
    still runs, since the interpreter waits for such a thread before it exits."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    status = code if isinstance(code, int) else 0 if code is None else 1
    if not isinstance(code, (int, type(None))):
        print(code, file=sys.stderr)  # as sys.exit prints a message it is given
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe (`aiflow ... | head`): what could be written was
            pass
    os._exit(status)
