"""The `aiflow` command. Parsing and printing only: the work is done by the modules it calls."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

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
@click.version_option(package_name="aiflow", prog_name="aiflow")
def cli() -> None:
    """Event-driven workflows for machine-learning and data pipelines, on Apache Kafka."""


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
    logging.basicConfig(level=os.environ.get("AIFLOW_LOG_LEVEL", "WARNING").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if "AIFLOW_LOG_LEVEL" not in os.environ:
        # librdkafka retries transient broker errors by itself; say so only when asked. A command that
        # cannot reach Kafka says so in its own one-line error.
        logging.getLogger("aiflow.librdkafka").setLevel(logging.CRITICAL)
        logging.getLogger("aiflow.kafka").setLevel(logging.ERROR)
    sys.exit(cli.main(prog_name="aiflow"))
