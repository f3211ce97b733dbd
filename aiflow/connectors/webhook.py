"""The webhook receiver: `POST /events` turns an HTTP request into an event.

- `POST /events` with `{"key": ..., "value": ..., "namespace": ...}` (value and namespace optional).
- `POST /events/raw` with any JSON body, mapped like the Kafka bridge does (a `Mapping`).
- `Authorization: Bearer <token>` is required when a token is configured; without one the receiver
  refuses to listen on anything but loopback.
- It answers 200 with the stored event only once the event is durable; 400 with a reason for bad
  input (a bad `Content-Length` or `Authorization` header included), 401 without the right token,
  404 for other paths. It listens on 127.0.0.1 unless told otherwise.
- A client gets READ_TIMEOUT seconds to send its request: a slow or stalled one cannot hold a thread.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiflow.config import Config, is_loopback
from aiflow.connectors.mapping import Mapping, MappingError, parse_json
from aiflow.errors import AIFlowError, EventError
from aiflow.events import EventClient
from aiflow.protocol.records import MAX_EVENT_BYTES

log = logging.getLogger(__name__)
# Room for the largest event written as JSON (escapes make the body larger than the event); the event
# itself is then held to MAX_EVENT_BYTES by the event client.
MAX_BODY = 2 * MAX_EVENT_BYTES
READ_TIMEOUT = 10.0


class WebhookServer:
    def __init__(self, config: Config, host: str = "127.0.0.1", port: int = 8787, token: str | None = None,
                 mapping: Mapping | None = None, namespace: str | None = None,
                 read_timeout: float = READ_TIMEOUT) -> None:
        if not token and not is_loopback(host):
            raise AIFlowError(f"the webhook would accept events from anyone on {host}: set a token (--token or "
                              "AIFLOW_WEBHOOK_TOKEN), or listen on 127.0.0.1")
        self.client = EventClient(config, namespace=namespace, sender="webhook")
        self.token = token
        self.mapping = mapping
        self.read_timeout = read_timeout
        handler = self._handler()
        self.server = ThreadingHTTPServer((host, port), handler)
        self.port = int(self.server.server_address[1])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = outer.read_timeout  # socket timeout for reading the request line, headers and body

            def log_message(self, format: str, *args: Any) -> None:
                log.info("webhook: " + format, *args)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _drain(self, length: int) -> None:
                """Read and drop a body too large to take (up to a few times the limit), so the client,
                still sending it, gets the answer instead of a broken pipe."""
                left = min(max(length, 0), 4 * MAX_BODY)
                try:
                    while left > 0 and (chunk := self.rfile.read(min(left, 1 << 16))):
                        left -= len(chunk)
                except TimeoutError:
                    pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                if self.path not in ("/events", "/events/raw"):
                    return self._answer(404, {"error": f"no such path {self.path}: POST /events or /events/raw"})
                if outer.token:
                    # Headers arrive as Latin-1 text; compared as bytes, a non-ASCII one is just wrong.
                    given = self.headers.get("Authorization", "").encode("latin-1", errors="replace")
                    if not hmac.compare_digest(given, f"Bearer {outer.token}".encode()):
                        return self._answer(401, {"error": "missing or wrong bearer token"})
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    return self._answer(400, {"error": "Content-Length is not a number"})
                if length <= 0 or length > MAX_BODY:
                    self._drain(length)
                    return self._answer(400, {"error": f"a JSON body of 1 byte to {MAX_BODY:,} bytes is needed"})
                try:
                    data = self.rfile.read(length)
                except TimeoutError:
                    return self._answer(400, {"error": f"the body did not arrive within {outer.read_timeout:g} s"})
                if len(data) < length:
                    return self._answer(400, {"error": f"the body ended after {len(data)} of {length} bytes"})
                try:
                    body = parse_json(data)
                    key, value, namespace = outer.parse(self.path, body)
                except MappingError as exc:
                    return self._answer(400, {"error": str(exc)})
                try:
                    event = outer.client.send_event(key, value, namespace=namespace)
                except EventError as exc:  # over the size limit, or text that cannot be encoded
                    return self._answer(400, {"error": str(exc)})
                except AIFlowError as exc:
                    return self._answer(503, {"error": f"the event could not be stored: {exc}"})
                return self._answer(200, event.to_dict())

        return Handler

    def parse(self, path: str, body: Any) -> tuple[str, str | None, str | None]:
        if path == "/events/raw":
            if self.mapping is None:
                raise MappingError("raw mode needs a mapping (--key-template ...)")
            mapped = self.mapping.event(body)
            if mapped is None:
                raise MappingError("the body is left out by the mapping's filters")
            return mapped[0], mapped[1], self.mapping.namespace
        if not isinstance(body, dict):
            raise MappingError('the body must be an object: {"key": ..., "value": ..., "namespace": ...}')
        key, value, namespace = body.get("key"), body.get("value"), body.get("namespace")
        if not isinstance(key, str) or not key:
            raise MappingError("'key' must be a non-empty string")
        if value is not None and not isinstance(value, str):
            value = json.dumps(value, sort_keys=True)
        if namespace is not None and not isinstance(namespace, str):
            raise MappingError("'namespace' must be a string")
        return key, value, namespace

    def serve(self, stop: threading.Event) -> None:
        thread = threading.Thread(target=self.server.serve_forever, name="aiflow-webhook", daemon=True)
        thread.start()
        log.info("webhook: listening on %s:%d", *self.server.server_address[:2])
        stop.wait()
        self.server.shutdown()
        self.server.server_close()
        self.client.close()
