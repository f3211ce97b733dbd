"""`aiflow webserver start | stop`: the REST API over HTTP."""

from __future__ import annotations

import threading

import click

from aiflow.cli.common import apply_log_format, load_config, service_output
from aiflow.cli.output import output_option
from aiflow.cli.service_cmd import _log_file, _pid_file, _started, _status, _stopped, daemon_logging, wait_option
from aiflow.process import READY, start_daemon


@click.group("webserver")
def group() -> None:
    """The web server: the REST API at /api/v1, its OpenAPI docs at /docs, /healthz and /readyz."""


@group.command("start")
@click.option("-d", "--daemon", is_flag=True, help="Run in the background; logs go to $AIFLOW_HOME/logs.")
@click.option("--host", default=None, help="Address to listen on (default: webserver.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=None,
              help="Port to listen on (default: webserver.port, 8080).")
@wait_option
@service_output
def start(daemon: bool, host: str | None, port: int | None, wait: float, log_format: str | None, fmt: str) -> None:
    """Start the web server. Off loopback it needs a bearer token: $AIFLOW_WEBSERVER_TOKEN or the file
    named by webserver.token_file; with one, every /api request must carry it."""
    from aiflow.scheduler.process import run_services
    from aiflow.web.server import WebServer

    config = load_config()
    server = WebServer(config, host, port)  # refuses a listen address off loopback without a token
    status = _status(config, "webserver")
    apply_log_format(log_format, fmt)
    if daemon:
        argv = ["webserver", "start", "--host", server.host, "--port", str(server.port)]
        pid = start_daemon("webserver", argv, _pid_file(config, "webserver"), _log_file(config, "webserver"),
                           status=status, wait=wait, stop_command="aiflow webserver stop")
        _started("Web server", "webserver", pid, config, fmt, url=server.url)
        return
    daemon_logging(config)
    stop = threading.Event()

    def ready_when_listening() -> None:
        server.listening.wait()
        status.set(READY)

    threading.Thread(target=ready_when_listening, name="aiflow-webserver-ready", daemon=True).start()
    try:
        run_services("webserver", [("webserver", server.run)], stop)
    finally:
        status.clear()


@group.command("stop")
@output_option
def stop(fmt: str) -> None:
    """Stop the web server started with --daemon from this aiflow home."""
    _stopped("Web server", "webserver", 30, fmt)
