"""What several commands share: loading the configuration, the namespace option."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import click

from aiflow.config import Config


def load_config() -> Config:
    return Config.load()


# Whether the running command asked `aiflow` to end the moment it returns (end_at_once).
_end_at_once = False


def end_at_once() -> None:
    """Let `aiflow` end as soon as this command returns, its output and log lines flushed, without the interpreter's
    teardown (aiflow.cli.main.end_now). That teardown destroys the process's Kafka clients one by one (what they sent
    is durable already) and frees every module: about 70 ms of a 300 ms `workflow-execution start`, spent on two
    cores beside the scheduler and the worker acting on what it just sent (benchmarks/README.md). For commands that
    leave nothing behind them: no file open for writing, no child process, no Kafka record still to be sent."""
    global _end_at_once
    _end_at_once = True


def ends_at_once() -> bool:
    """Whether the command that ran asked for end_at_once."""
    return _end_at_once


def end_normally() -> None:
    """Forget an earlier end_at_once (main() calls it before it runs a command)."""
    global _end_at_once
    _end_at_once = False


namespace_option = click.option("-n", "--namespace", default=None,
                                help="Namespace (default: the configured one, normally 'default').")


log_format_option = click.option(
    "--log-format", type=click.Choice(["text", "json"]), default=None,
    help="Log lines as text with timestamps, or one JSON object per line (default: $AIFLOW_LOG_FORMAT, else "
         "text; -o json implies json).")


def service_output(f: Callable[..., Any]) -> Callable[..., Any]:
    """`-o` and `--log-format` of a service command: with --daemon, -o formats what was started; in the
    foreground a service's output is its log, so -o json there writes JSON log lines."""
    from aiflow.cli.output import output_option

    return output_option(log_format_option(f))


def apply_log_format(log_format: str | None, fmt: str | None = None) -> None:
    """Log as `log_format` (or JSON when the output format `fmt` is json), in this process and in the
    services it starts; neither given: $AIFLOW_LOG_FORMAT, else text."""
    from aiflow.process import use_log_format

    chosen = log_format or ("json" if fmt == "json" else None)
    if chosen:
        use_log_format(chosen)


def service_logging() -> None:
    """Logging of a long-running service (scheduler, worker, standalone, connector): its own lines at
    INFO, Kafka outages as the quiet lines of aiflow/kafka/health.py, librdkafka's own from WARNING."""
    if "AIFLOW_LOG_LEVEL" in os.environ:
        return
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("aiflow.librdkafka").setLevel(logging.WARNING)
    logging.getLogger("aiflow.kafka").setLevel(logging.INFO)


# Exit codes of the commands that wait for an execution (`start --wait`, `show --watch`); a mistake in
# the command line exits 2 (click's usage error), any other error 1 with its one line on stderr.
EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3


def exit_code_of(status: str) -> int:
    """0 for an execution that SUCCEEDED, 1 for one that FAILED or was STOPPED."""
    return EXIT_SUCCESS if status == "SUCCESS" else EXIT_FAILED
