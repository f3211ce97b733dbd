"""The `aiflow` command. Parsing and printing only: the work is done by the modules it calls."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from aiflow import __version__
from aiflow.cli.output import emit_result, output_option
from aiflow.errors import AIFlowError


class AIFlowGroup(click.Group):
    """Turns aiflow's errors into one line on stderr and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AIFlowError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            from confluent_kafka import KafkaException

            if isinstance(exc, KafkaException):
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


def _register() -> None:
    from aiflow.cli import (
        broker_cmd,
        config_cmd,
        connector_cmd,
        db_cmd,
        dead_letter_cmd,
        event_cmd,
        execution_cmd,
        namespace_cmd,
        service_cmd,
        standalone_cmd,
        status_cmd,
        topics_cmd,
        trigger_cmd,
        webserver_cmd,
        workflow_cmd,
    )

    for module in (standalone_cmd, config_cmd, broker_cmd, topics_cmd, db_cmd, event_cmd, dead_letter_cmd,
                   namespace_cmd, workflow_cmd, connector_cmd, webserver_cmd):
        cli.add_command(module.group)
    for command in (workflow_cmd.snapshot_group, execution_cmd.execution_group, execution_cmd.task_group,
                    trigger_cmd.trigger_group, trigger_cmd.schedule_group, service_cmd.scheduler_group,
                    service_cmd.worker_group, status_cmd.status):
        cli.add_command(command)


_register()


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
    sys.exit(cli.main(prog_name="aiflow"))
