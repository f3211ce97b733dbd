"""`aiflow scheduler start | stop` and `aiflow worker start | stop`."""

from __future__ import annotations

from pathlib import Path

import click

from aiflow.cli.common import load_config, service_logging
from aiflow.config import Config
from aiflow.process import ServiceStatus, log_to_service_file, start_daemon, stop_daemon


def _pid_file(config: Config, name: str) -> Path:
    return config.home / "run" / f"{name}.pid"


def _status(config: Config, name: str) -> ServiceStatus:
    return ServiceStatus(config.home / "run" / f"{name}.status")


def _log_file(config: Config, name: str) -> Path:
    return config.home / "logs" / f"{name}.log"


def daemon_logging(config: Config) -> None:
    """The logging of a service: at INFO; started with --daemon, into its log file rotated by size."""
    service_logging()
    log_to_service_file(int(config.values["logs.max_bytes"]), int(config.values["logs.backups"]))


@click.group("scheduler")
def scheduler_group() -> None:
    """The scheduler: router, rule engine, timers and the database projection."""


wait_option = click.option("--wait", type=click.FloatRange(min=1), default=30.0, show_default=True,
                           help="With --daemon: seconds to wait for it to be ready (it keeps trying after).")


@scheduler_group.command("start")
@click.option("-d", "--daemon", is_flag=True, help="Run in the background; logs go to $AIFLOW_HOME/logs.")
@wait_option
def scheduler_start(daemon: bool, wait: float) -> None:
    """Start a scheduler (several may run: they share the work). Without a reachable Kafka it says which
    address it waits for and keeps trying."""
    config = load_config()
    status = _status(config, "scheduler")
    if daemon:
        pid = start_daemon("scheduler", ["scheduler", "start"], _pid_file(config, "scheduler"),
                           _log_file(config, "scheduler"), status=status, wait=wait,
                           stop_command="aiflow scheduler stop")
        click.echo(f"Scheduler started (pid {pid}); log: {_log_file(config, 'scheduler')}")
        return
    from aiflow.scheduler.process import run_scheduler

    daemon_logging(config)
    try:
        run_scheduler(config, say=status.set)
    finally:
        status.clear()


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
@wait_option
def worker_start(daemon: bool, slots: int | None, wait: float) -> None:
    """Start a worker (several may run: they share the task commands). Without a reachable Kafka it says
    which address it waits for and keeps trying."""
    config = load_config()
    status = _status(config, "worker")
    if daemon:
        argv = ["worker", "start", *(["--slots", str(slots)] if slots else [])]
        pid = start_daemon("worker", argv, _pid_file(config, "worker"), _log_file(config, "worker"), status=status,
                           wait=wait, stop_command="aiflow worker stop")
        click.echo(f"Worker started (pid {pid}); log: {_log_file(config, 'worker')}")
        return
    from aiflow.scheduler.process import run_worker

    daemon_logging(config)
    try:
        run_worker(config, slots, say=status.set)
    finally:
        status.clear()


@worker_group.command("stop")
def worker_stop() -> None:
    """Stop the worker started with --daemon from this aiflow home (its tries are stopped)."""
    config = load_config()
    click.echo("Worker stopped." if stop_daemon(_pid_file(config, "worker"), 60) else "No worker was running.")
