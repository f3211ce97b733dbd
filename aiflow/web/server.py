"""The web server as a service: uvicorn serving `create_app`, stopped by the service's stop event."""

from __future__ import annotations

import logging
import threading

from aiflow.config import Config, is_loopback, read_token
from aiflow.errors import ConfigError

log = logging.getLogger(__name__)


def webserver_token(config: Config, host: str) -> str | None:
    """The API's bearer token ($AIFLOW_WEBSERVER_TOKEN or webserver.token_file); ConfigError when
    there is none and the server would listen off loopback."""
    token = read_token("AIFLOW_WEBSERVER_TOKEN", str(config.values["webserver.token_file"]) or None, "web server")
    if token is None and not is_loopback(host):
        raise ConfigError(f"the web server would let anyone on {host} start and stop workflows: set a token "
                          "(AIFLOW_WEBSERVER_TOKEN or webserver.token_file), or listen on 127.0.0.1")
    return token


class WebServer:
    """One web server; `run(stop)` serves until `stop` is set (it fits `run_services`)."""

    def __init__(self, config: Config, host: str | None = None, port: int | None = None) -> None:
        self.config = config
        self.host = host or str(config.values["webserver.host"])
        self.port = int(config.values["webserver.port"]) if port is None else port
        self.token = webserver_token(config, self.host)
        self.listening = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def run(self, stop: threading.Event) -> None:
        import uvicorn

        from aiflow.web.api import create_app

        server = uvicorn.Server(uvicorn.Config(create_app(self.config, self.token), host=self.host, port=self.port,
                                               log_config=None, access_log=False, timeout_graceful_shutdown=3))

        def watch() -> None:
            while not server.started and not server.should_exit and not stop.is_set():
                stop.wait(0.05)
            if server.started:
                log.info("web server: listening on %s", self.url)
                self.listening.set()
            stop.wait()
            server.should_exit = True

        threading.Thread(target=watch, name="aiflow-webserver-watch", daemon=True).start()
        try:
            server.run()
        except SystemExit:  # uvicorn's answer to a port it cannot bind
            pass
        if not server.started and not stop.is_set():
            raise ConfigError(f"the web server could not listen on {self.url} (is the port in use?)")
