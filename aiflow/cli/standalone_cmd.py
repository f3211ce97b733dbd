"""`aiflow standalone [-d] | stop`: broker (unless one is configured), database, topics, scheduler and
worker in one command, for a laptop or a quick start."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import click

from aiflow.cli.common import load_config
from aiflow.config import Config
from aiflow.errors import AIFlowError
from aiflow.process import read_pid, start_daemon, stop_daemon


def _pid_file(config: Config) -> Path:
    return config.home / "run" / "standalone.pid"


def _ready_file(config: Config) -> Path:
    return config.home / "run" / "standalone.ready"


@click.group("standalone", invoke_without_command=True)
@click.option("-d", "--daemon", is_flag=True, help="Run in the background; `aiflow standalone stop` ends it.")
@click.option("--slots", type=click.IntRange(min=1), default=None, help="Worker slots (default: worker.slots).")
@click.pass_context
def group(ctx: click.Context, daemon: bool, slots: int | None) -> None:
    """Run everything on this machine: Ctrl-C stops it all."""
    if ctx.invoked_subcommand is not None:
        return
    config = load_config()
    if daemon:
        _ready_file(config).unlink(missing_ok=True)
        log_file = config.home / "logs" / "standalone.log"
        pid = start_daemon("standalone", ["standalone", *(["--slots", str(slots)] if slots else [])],
                           _pid_file(config), log_file)
        deadline = time.monotonic() + 180
        while not _ready_file(config).exists():
            if read_pid(_pid_file(config)) is None:
                raise AIFlowError(f"aiflow standalone exited while starting; see {log_file}")
            if time.monotonic() > deadline:
                raise AIFlowError(f"aiflow standalone is not ready after 180 s; see {log_file}")
            time.sleep(0.3)
        click.echo(f"aiflow standalone is running (pid {pid}); log: {log_file}. Stop it with `aiflow standalone stop`.")
        return
    run_foreground(config, slots)


def run_foreground(config: Config, slots: int | None) -> None:
    from aiflow.kafka import topics
    from aiflow.kafka.local_broker import LocalBroker
    from aiflow.scheduler.process import run_services
    from aiflow.store.db import Store

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("aiflow.librdkafka").setLevel(logging.WARNING)
    broker = LocalBroker(config) if config.uses_local_broker else None
    started_broker = broker is not None and broker.start() is not None
    try:
        topics.create_topics(config)
        Store(config).ensure_schema()
        from aiflow.scheduler.router import Router
        from aiflow.scheduler.service import Scheduler
        from aiflow.store.projector import Projector
        from aiflow.worker.service import Worker

        services = [
            ("router", Router(config).run),
            ("scheduler", Scheduler(config).run),
            ("projector", Projector(config).run),
            ("worker", Worker(config, slots=slots or int(config.values["worker.slots"]),
                              heartbeat_interval=float(config.values["worker.heartbeat_interval"]),
                              stop_grace=float(config.values["worker.stop_grace"])).run),
        ]
        click.echo(f"aiflow standalone\n  home:     {config.home}\n  kafka:    {config.bootstrap}"
                   f"{' (local broker)' if broker else ''}\n  database: {config.db_uri}\n"
                   f"  logs:     {config.home / 'logs'}\n"
                   "Scheduler and worker running; Ctrl-C stops everything.", err=True)
        stop = threading.Event()
        _ready_file(config).parent.mkdir(parents=True, exist_ok=True)
        _ready_file(config).write_text("ready\n")
        run_services("standalone", services, stop)
    finally:
        _ready_file(config).unlink(missing_ok=True)
        if started_broker and broker is not None:
            broker.stop()
        click.echo("aiflow standalone stopped.", err=True)


@group.command("stop")
def stop() -> None:
    """Stop the `aiflow standalone -d` of this aiflow home (and the broker it started)."""
    config = load_config()
    stopped = stop_daemon(_pid_file(config), 90)
    click.echo("aiflow standalone stopped." if stopped else "aiflow standalone was not running.")
