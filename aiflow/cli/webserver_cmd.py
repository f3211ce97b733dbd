"""`aiflow webserver start | stop`: the REST API (and, later, the pages) over HTTP."""

from __future__ import annotations

import logging
import threading
import time

import click

from aiflow.cli.common import load_config
from aiflow.cli.service_cmd import _log_file, _pid_file, _status, daemon_logging, wait_option
from aiflow.config import is_loopback, read_token
from aiflow.errors import ConfigError
from aiflow.process import READY, start_daemon, stop_daemon


@click.group("webserver")
def group() -> None:
    """The web server: the REST API at /api/v1, its OpenAPI docs at /docs, /healthz and /readyz."""


@group.command("start")
@click.option("-d", "--daemon", is_flag=True, help="Run in the background; logs go to $AIFLOW_HOME/logs.")
@click.option("--host", default=None, help="Address to listen on (default: webserver.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=None,
              help="Port to listen on (default: webserver.port, 8080).")
@wait_option
def start(daemon: bool, host: str | None, port: int | None, wait: float) -> None:
    """Start the web server. Off loopback it needs a bearer token: $AIFLOW_WEBSERVER_TOKEN or the file
    named by webserver.token_file; with one, every /api request must carry it."""
    config = load_config()
    host = host or str(config.values["webserver.host"])
    port = int(config.values["webserver.port"]) if port is None else port
    token = read_token("AIFLOW_WEBSERVER_TOKEN", str(config.values["webserver.token_file"]) or None, "web server")
    if token is None and not is_loopback(host):
        raise ConfigError(f"the web server would let anyone on {host} start and stop workflows: set a token "
                          "(AIFLOW_WEBSERVER_TOKEN or webserver.token_file), or listen on 127.0.0.1")
    status = _status(config, "webserver")
    if daemon:
        argv = ["webserver", "start", "--host", host, "--port", str(port)]
        pid = start_daemon("webserver", argv, _pid_file(config, "webserver"), _log_file(config, "webserver"),
                           status=status, wait=wait, stop_command="aiflow webserver stop")
        click.echo(f"Web server started (pid {pid}) on http://{host}:{port}; log: {_log_file(config, 'webserver')}")
        return
    import uvicorn

    from aiflow.web.api import create_app

    daemon_logging(config)
    app = create_app(config, token)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))

    def say_when_listening() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            status.set(READY)
            logging.getLogger(__name__).info("web server: listening on http://%s:%s", host, port)

    threading.Thread(target=say_when_listening, name="aiflow-webserver-ready", daemon=True).start()
    try:
        server.run()
    finally:
        status.clear()


@group.command("stop")
def stop() -> None:
    """Stop the web server started with --daemon from this aiflow home."""
    config = load_config()
    click.echo("Web server stopped." if stop_daemon(_pid_file(config, "webserver"), 30) else
               "No web server was running.")
