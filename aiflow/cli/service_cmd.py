"""`aiflow scheduler start | stop` and `aiflow worker start | stop`."""

from __future__ import annotations

from pathlib import Path

import click

from aiflow.cli.common import apply_log_format, load_config, service_logging, service_output
from aiflow.cli.output import emit_result, output_option
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
@service_output
def scheduler_start(daemon: bool, wait: float, log_format: str | None, fmt: str) -> None:
    """Start a scheduler (several may run: they share the work). Without a reachable Kafka it says which
    address it waits for and keeps trying."""
    config = load_config()
    status = _status(config, "scheduler")
    apply_log_format(log_format, fmt)
    if daemon:
        pid = start_daemon("scheduler", ["scheduler", "start"], _pid_file(config, "scheduler"),
                           _log_file(config, "scheduler"), status=status, wait=wait,
                           stop_command="aiflow scheduler stop")
        _started("Scheduler", "scheduler", pid, config, fmt)
        return
    from aiflow.scheduler.process import run_scheduler

    daemon_logging(config)
    try:
        run_scheduler(config, say=status.set)
    finally:
        status.clear()


@scheduler_group.command("stop")
@output_option
def scheduler_stop(fmt: str) -> None:
    """Stop the scheduler started with --daemon from this aiflow home."""
    _stopped("Scheduler", "scheduler", 60, fmt)


def _started(label: str, name: str, pid: int, config: Config, fmt: str, **more: object) -> None:
    """What `<service> start -d` says: the pid and the log file."""
    log_file = _log_file(config, name)
    where = f" on {more['url']}" if "url" in more else ""
    emit_result(f"{label} started (pid {pid}){where}; log: {log_file}",
                {"service": name, "pid": pid, "log": str(log_file), **more}, fmt)


def _stopped(label: str, name: str, timeout: float, fmt: str) -> None:
    """What `<service> stop` says: whether one was running."""
    stopped = stop_daemon(_pid_file(load_config(), name), timeout)
    emit_result(f"{label} stopped." if stopped else f"No {label.lower()} was running.",
                {"service": name, "stopped": stopped}, fmt)


@click.group("worker")
def worker_group() -> None:
    """The worker: runs task tries."""


def _queues(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from aiflow.sdk.workflow import DEFAULT_QUEUE, check_queue

    try:
        return tuple(dict.fromkeys(check_queue(q) for q in value)) or (DEFAULT_QUEUE,)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


queue_option = click.option("-q", "--queue", "queues", multiple=True, callback=_queues, metavar="QUEUE",
                            help="A queue this worker serves: it runs the tasks written with `queue=QUEUE`. "
                                 "Repeat it for several (default: the default queue, `default`).")


def worker_name(queues: tuple[str, ...]) -> str:
    """The name of a worker daemon of this home (its pid file and log): one per set of queues, so a
    default worker and a gpu worker can run side by side from one home."""
    return "worker" if queues == ("default",) else "worker-" + "+".join(queues)


@worker_group.command("start")
@click.option("-d", "--daemon", is_flag=True, help="Run in the background; logs go to $AIFLOW_HOME/logs.")
@click.option("--slots", type=click.IntRange(min=1), default=None,
              help="Tries run at once (default: worker.slots). A never-ending task holds a slot.")
@queue_option
@wait_option
@service_output
def worker_start(daemon: bool, slots: int | None, queues: tuple[str, ...], wait: float, log_format: str | None,
                 fmt: str) -> None:
    """Start a worker (several may run: they share the task commands of their queues). Without a
    reachable Kafka it says which address it waits for and keeps trying."""
    config = load_config()
    name = worker_name(queues)
    status = _status(config, name)
    apply_log_format(log_format, fmt)
    if daemon:
        argv = ["worker", "start", *(["--slots", str(slots)] if slots else []),
                *(arg for q in queues for arg in ("--queue", q))]
        stop_command = "aiflow worker stop" + "".join(f" --queue {q}" for q in queues if name != "worker")
        pid = start_daemon(name, argv, _pid_file(config, name), _log_file(config, name), status=status,
                           wait=wait, stop_command=stop_command)
        _started("Worker", name, pid, config, fmt, queues=list(queues))
        return
    from aiflow.scheduler.process import run_worker

    daemon_logging(config)
    try:
        run_worker(config, slots, say=status.set, queues=queues)
    finally:
        status.clear()


@worker_group.command("stop")
@queue_option
@output_option
def worker_stop(queues: tuple[str, ...], fmt: str) -> None:
    """Stop the worker started with --daemon from this aiflow home (its tries are stopped); with --queue,
    the one started with those queues."""
    _stopped("Worker", worker_name(queues), 60, fmt)
