"""`aiflow scheduler start | stop` and `aiflow worker start | stop`."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from aiflow.cli.common import load_config
from aiflow.config import Config
from aiflow.process import start_daemon, stop_daemon


def _pid_file(config: Config, name: str) -> Path:
    return config.home / "run" / f"{name}.pid"


def _log_file(config: Config, name: str) -> Path:
    return config.home / "logs" / f"{name}.log"


def _foreground_logging() -> None:
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("aiflow.librdkafka").setLevel(logging.WARNING)


@click.group("scheduler")
def scheduler_group() -> None:
    """The scheduler: router, rule engine, timers and the database projection."""


@scheduler_group.command("start")
@click.option("-d", "--daemon", is_flag=True, help="Run in the background; logs go to $AIFLOW_HOME/logs.")
def scheduler_start(daemon: bool) -> None:
    """Start a scheduler (several may run: they share the work)."""
    config = load_config()
    if daemon:
        pid = start_daemon("scheduler", ["scheduler", "start"], _pid_file(config, "scheduler"),
                           _log_file(config, "scheduler"))
        click.echo(f"Scheduler started (pid {pid}); log: {_log_file(config, 'scheduler')}")
        return
    from aiflow.scheduler.process import run_scheduler

    _foreground_logging()
    run_scheduler(config)


@scheduler_group.command("stop")
def scheduler_stop() -> None:
    """Stop the scheduler started with --daemon from this aiflow home."""
    config = load_config()
    click.echo("Scheduler stopped." if stop_daemon(_pid_file(config, "scheduler"), 60) else "No scheduler was running.")


@click.group("worker")
def worker_group() -> None:
    """The worker: runs task tries."""


@worker_group.command("start")
@click.option("-d", "--daemon", is_flag=True, help="Run in the background; logs go to $AIFLOW_HOME/logs.")
@click.option("--slots", type=click.IntRange(min=1), default=None,
              help="Tries run at once (default: worker.slots). A never-ending task holds a slot.")
def worker_start(daemon: bool, slots: int | None) -> None:
    """Start a worker (several may run: they share the task commands)."""
    config = load_config()
    if daemon:
        argv = ["worker", "start", *(["--slots", str(slots)] if slots else [])]
        pid = start_daemon("worker", argv, _pid_file(config, "worker"), _log_file(config, "worker"))
        click.echo(f"Worker started (pid {pid}); log: {_log_file(config, 'worker')}")
        return
    from aiflow.scheduler.process import run_worker

    _foreground_logging()
    run_worker(config, slots)


@worker_group.command("stop")
def worker_stop() -> None:
    """Stop the worker started with --daemon from this aiflow home (its tries are stopped)."""
    config = load_config()
    click.echo("Worker stopped." if stop_daemon(_pid_file(config, "worker"), 60) else "No worker was running.")
