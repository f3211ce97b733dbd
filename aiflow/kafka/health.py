"""Quiet logs while Kafka is away: one line when trouble starts, at most one every 30 s while it
lasts, one when it ends saying how long it lasted.

librdkafka retries connections by itself, several times a second per broker and per client, and logs
each failure; during a broker restart that was thousands of lines a minute. Every client aiflow
makes (aiflow/kafka/clients.py) reports its connection errors and its statistics here instead: the
librdkafka lines about connections are dropped by `ConnectionLinesFilter`, and each client's
`Outage` says what happened in its own few lines.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError

log = logging.getLogger("aiflow.kafka")

# Errors that mean "cannot reach the cluster", which librdkafka retries on its own.
UNREACHABLE = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
                         KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT})
REPEAT_EVERY = 30.0


class Outage:
    """One kind of trouble of one client or loop, reported quietly. Thread-safe.

    A failure within `every` seconds of the end of the last outage continues it rather than starting
    a new one: a cluster coming back often answers one connection and refuses the next (the bootstrap
    address is up before the broker's advertised one), and that flapping is one outage, not several.
    """

    def __init__(self, what: str, every: float = REPEAT_EVERY, logger: logging.Logger = log) -> None:
        self.what = what
        self.every = every
        self.logger = logger
        self.since: float | None = None
        self._last_line = 0.0
        self._failures = 0
        self._ended: tuple[float, float] | None = None  # (when the last outage ended, when it had begun)
        self._resumed = False  # the current outage is one that seemed over and went on
        self._lock = threading.Lock()

    def failed(self, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self.since is None and self._ended is not None and now - self._ended[0] < self.every:
                self.since, self._resumed = self._ended[1], True  # the same outage goes on, quietly
                return
            if self.since is None:
                self.since, self._last_line, self._failures = now, now, 1
                self.logger.warning("%s: %s (retrying; quiet until it changes, a line every %.0f s)", self.what,
                                    detail, self.every)
            elif now - self._last_line >= self.every:
                self._last_line = now
                self.logger.warning("%s: still failing after %.0f s (%d failures): %s", self.what, now - self.since,
                                    self._failures, detail)

    def ok(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self.since is None:
                return
            gone, began, self.since = now - self.since, self.since, None
            quiet = self._resumed and now - self._ended[0] < self.every if self._ended else False
            self._ended, self._resumed = (now, began), False
        # Back once more after a moment's flapping: it said "back" already.
        self.logger.log(logging.DEBUG if quiet else logging.WARNING, "%s: back after %.1f s", self.what, gone)

    @property
    def failing(self) -> bool:
        return self.since is not None


class ClientHealth:
    """The `error_cb` and `stats_cb` of one Kafka client: the cluster unreachable, then back."""

    def __init__(self, role: str, bootstrap: str) -> None:
        self.outage = Outage(f"Kafka at {bootstrap} ({role} client)")
        # Set when the client lost the cluster; its owner may clear it (a transactional loop renews its
        # producer then: one that lived through an outage can hang on stale coordinators).
        self.interrupted = False

    def on_error(self, error: KafkaError) -> None:
        if error.fatal():
            log.error("%s: fatal error: %s", self.outage.what, error.str())
        elif error.code() == KafkaError._TRANSPORT and "Disconnected" in error.str():
            # A connection closed: the broker's idle timeout, or the first sign of an outage. librdkafka
            # reconnects by itself; a real outage shows next, as failures to connect.
            log.debug("%s: %s", self.outage.what, error.str())
        elif error.code() in UNREACHABLE:
            self.interrupted = True
            self.outage.failed(error.str())
        else:
            log.warning("%s: %s", self.outage.what, error.str())

    def on_stats(self, stats: str) -> None:
        if self.outage.failing and _any_broker_up(stats):
            self.outage.ok()


def _any_broker_up(stats: str) -> bool:
    try:
        brokers: dict[str, Any] = json.loads(stats).get("brokers", {})
    except ValueError:
        return False
    return any(b.get("state") == "UP" for b in brokers.values() if isinstance(b, dict))


class ConnectionLinesFilter(logging.Filter):
    """Drops librdkafka's own lines about connections failing or closing: each client's `Outage`
    reports those, quietly."""

    FACILITIES = frozenset({"FAIL", "ERROR", "BROKERFAIL", "REQTMOUT", "CONNECT", "DISCONNECT"})
    PHRASES = ("Connect to", "Connection refused", "Disconnected", "brokers are down", "Failed to resolve",
               "Receive failed", "Send failed", "timed out", "Connection reset", "Broken pipe")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        facility, text = (str(args[0]), str(args[-1])) if len(args) >= 2 else ("", record.getMessage())
        return not (facility in self.FACILITIES and any(p in text for p in self.PHRASES))
