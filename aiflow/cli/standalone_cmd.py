"""`aiflow standalone [-d] | stop`: broker (unless one is configured), database, topics, scheduler and
worker in one command, for a laptop or a quick start.

The broker it starts is supervised: should it die, it is started again (after 1 s, doubling to 30 s
while it keeps dying). A configured cluster that does not answer is waited for. `aiflow standalone
stop` ends it all within seconds, running tries included, and leaves no process behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aiflow.cli.common import apply_log_format, load_config, service_logging, service_output
from aiflow.cli.output import emit_result, output_option
from aiflow.cli.service_cmd import queue_option
from aiflow.config import Config
from aiflow.process import ServiceStatus, log_to_service_file, private_home, read_pid, start_daemon, stop_group

if TYPE_CHECKING:
    from aiflow.kafka.local_broker import LocalBroker

log = logging.getLogger(__name__)
# How long `standalone stop` waits before it kills what is left.
STOP_WAIT = 10.0


def _pid_file(config: Config) -> Path:
    return config.home / "run" / "standalone.pid"


def _status(config: Config) -> ServiceStatus:
    return ServiceStatus(config.home / "run" / "standalone.status")



def banner(config: Config, local_broker: bool, web: str | None = None) -> str:
    """What `standalone` says when it runs: where everything is, with the database password masked."""
    return (f"aiflow standalone\n  home:     {config.home}\n  kafka:    {config.bootstrap}"
            f"{' (local broker)' if local_broker else ''}\n  database: {config.safe_db_uri}\n"
            + (f"  web:      {web} (REST API at /api/v1)\n" if web else "")
            + f"  logs:     {config.home / 'logs'}\nScheduler and worker running; Ctrl-C stops everything.")

@click.group("standalone", invoke_without_command=True)
@click.option("-d", "--daemon", is_flag=True, help="Run in the background; `aiflow standalone stop` ends it.")
@click.option("--slots", type=click.IntRange(min=1), default=None, help="Worker slots (default: worker.slots).")
@queue_option
@click.option("--webserver/--no-webserver", default=True, show_default=True,
              help="Also run the web server (webserver.host:webserver.port, 127.0.0.1:8080 by default).")
@service_output
@click.pass_context
def group(ctx: click.Context, daemon: bool, slots: int | None, queues: tuple[str, ...], webserver: bool,
          log_format: str | None, fmt: str) -> None:
    """Run everything on this machine: Ctrl-C stops it all."""
    if ctx.invoked_subcommand is not None:
        return
    config = load_config()
    apply_log_format(log_format, fmt)
    if daemon:
        from aiflow.kafka.local_broker import fetch_jars

        fetch_jars(config)  # a first start fetches the local broker's jars: here, where the progress shows
        log_file = config.home / "logs" / "standalone.log"
        # The first start may fetch the broker's jars from Maven Central: room for that.
        argv = ["standalone", *(["--slots", str(slots)] if slots else []),
                *(arg for q in queues if queues != ("default",) for arg in ("--queue", q)),
                *([] if webserver else ["--no-webserver"])]
        pid = start_daemon("standalone", argv,
                           _pid_file(config), log_file, status=_status(config), wait=180,
                           stop_command="aiflow standalone stop")
        emit_result(f"aiflow standalone is running (pid {pid}); log: {log_file}. "
                    "Stop it with `aiflow standalone stop`.",
                    {"service": "standalone", "pid": pid, "log": str(log_file), "bootstrap": config.bootstrap}, fmt)
        return
    run_foreground(config, slots, webserver, queues)


def _optional(label: str, run: Callable[[threading.Event], None]) -> Callable[[threading.Event], None]:
    """A service whose failure (the web server's port taken, say) is logged, not the end of the rest."""
    def guarded(stop: threading.Event) -> None:
        try:
            run(stop)
        except Exception as exc:
            logging.getLogger(__name__).error("standalone: the %s is off: %s", label, exc)
    return guarded


def run_foreground(config: Config, slots: int | None, webserver: bool = True,
                   queues: tuple[str, ...] = ("default",)) -> None:
    from aiflow import metrics
    from aiflow.kafka import clients, topics
    from aiflow.kafka.local_broker import LocalBroker
    from aiflow.scheduler.process import handle_signals, run_services
    from aiflow.store.db import Store

    service_logging()
    private_home(config.home)
    log_to_service_file(int(config.values["logs.max_bytes"]), int(config.values["logs.backups"]))
    status = _status(config)
    stop = threading.Event()
    handle_signals(stop)
    metrics.serve_process(config, "metrics.scheduler_port", stop, lag=True)  # standalone: the scheduler's port
    broker = LocalBroker(config) if config.uses_local_broker else None
    started_broker = False
    if broker is not None:
        status.set(f"starting the local broker at {config.bootstrap}")
        started_broker = broker.start()
    try:
        if not clients.wait_until_reachable(config, stop, status.set):
            return
        topics.create_topics(config)
        Store(config).ensure_schema()
        from aiflow.scheduler.router import Router
        from aiflow.scheduler.service import Scheduler
        from aiflow.store.projector import Projector
        from aiflow.worker.service import Worker

        stop_grace = float(config.values["worker.stop_grace"])
        services: list[tuple[str, Callable[[threading.Event], None]]] = [
            ("router", Router(config).run),
            ("scheduler", Scheduler(config).run),
            ("projector", Projector(config).run),
            ("worker", Worker(config, slots=slots or int(config.values["worker.slots"]),
                              heartbeat_interval=float(config.values["worker.heartbeat_interval"]),
                              stop_grace=stop_grace, shutdown_grace=min(stop_grace, STOP_WAIT / 2),
                              queues=queues).run),
        ]
        if broker is not None and started_broker:
            services.append(("broker", BrokerSupervisor(broker).run))
        web = None
        if webserver:
            from aiflow.web.server import WebServer

            server = WebServer(config)
            services.append(("webserver", _optional("web server", server.run)))
            web = server.url
        click.echo(banner(config, local_broker=broker is not None, web=web), err=True)
        run_services("standalone", services, stop, status.set)
    finally:
        status.clear()
        if broker is not None and started_broker:
            broker.stop(timeout=STOP_WAIT / 2)
        click.echo("aiflow standalone stopped.", err=True)


class BrokerSupervisor:
    """Starts a node of the local broker again whenever it dies, after a back-off of 1 s doubling to
    30 s while it keeps dying; the services ride out the gap (they never give up on Kafka)."""

    def __init__(self, broker: LocalBroker) -> None:
        self.broker = broker

    def run(self, stop: threading.Event) -> None:
        from aiflow.errors import BrokerError
        from aiflow.kafka.transactions import Backoff

        backoff = Backoff(first=1.0, cap=30.0)
        while not stop.wait(0.5):
            dead = {i: p.returncode for i, p in self.broker.processes.items() if p.poll() is not None}
            if not dead:
                continue
            died = time.monotonic()
            for node_id, code in sorted(dead.items()):
                log.error("the local broker (node %d) exited with code %s; starting it again", node_id, code)
            while not stop.is_set():
                backoff.wait(stop)
                if stop.is_set():
                    return
                try:  # all dead nodes at once: a cluster that lost its quorum needs them together
                    self.broker.start_nodes(sorted(dead))
                except BrokerError as exc:
                    log.error("the local broker did not start again: %s; trying again", exc)
                    continue
                log.warning("the local broker (node %s) is running again, %.0f s after it died",
                            ", ".join(map(str, sorted(dead))), time.monotonic() - died)
                backoff.reset()
                break


@group.command("stop")
@output_option
def stop(fmt: str) -> None:
    """Stop the `aiflow standalone -d` of this aiflow home, its tries and the broker it started: within
    about 10 s, killing what is left after that."""
    from aiflow.kafka.local_broker import LocalBroker

    config = load_config()
    pid = read_pid(_pid_file(config))
    if pid is None:
        emit_result("aiflow standalone was not running.", {"service": "standalone", "stopped": False}, fmt)
        return
    stop_group(pid, STOP_WAIT)
    _pid_file(config).unlink(missing_ok=True)
    if config.uses_local_broker:  # killed before it could stop its broker: stop it here
        LocalBroker(config).stop(timeout=2)
    emit_result("aiflow standalone stopped.", {"service": "standalone", "stopped": True}, fmt)
