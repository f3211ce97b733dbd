"""The one place where Kafka clients are configured. Every other module asks here for a client.

Each setting that exists for a guarantee says which one next to it. User-supplied librdkafka
properties (`kafka.properties`, `AIFLOW_KAFKA_PROPERTY_*`) are applied first, so security settings
reach every client; the guarantee settings below are applied after them and cannot be weakened by
accident.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, ClusterMetadata

from aiflow.config import Config
from aiflow.errors import KafkaUnavailable
from aiflow.kafka.health import ClientHealth, ConnectionLinesFilter
from aiflow.protocol.records import PRODUCER_MAX_BYTES

# librdkafka's own log lines go through Python logging under this name instead of raw to stderr;
# those about connections are left to each client's quiet outage report (health.py).
LIBRDKAFKA_LOGGER = logging.getLogger("aiflow.librdkafka")
LIBRDKAFKA_LOGGER.addFilter(ConnectionLinesFilter())


def _base(config: Config, role: str, health: ClientHealth | None = None) -> dict[str, Any]:
    health = health or ClientHealth(role, config.bootstrap)
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap,
        "client.id": f"aiflow-{role}-{socket.gethostname()}",
        "logger": LIBRDKAFKA_LOGGER,
        # Quiet logs in an outage: errors and broker states reach the client's outage report.
        "error_cb": health.on_error,
        "stats_cb": health.on_stats,
        "statistics.interval.ms": 5000,
    }
    settings.update(config.kafka_properties)
    return settings


def producer(config: Config, *, role: str = "producer", transactional_id: str | None = None,
             linger_ms: int = 0, health: ClientHealth | None = None, **extra: Any) -> Producer:
    settings = _base(config, role, health)
    settings.update({
        # Durable when delivered: every in-sync replica has the record.
        "acks": "all",
        # No duplicates and no reordering from internal retries.
        "enable.idempotence": True,
        # Latency: a lone event is sent at once instead of waiting librdkafka's default 5 ms.
        "linger.ms": linger_ms,
        # Room for a dead letter (a record at the broker's limit plus headers); every other record is
        # checked against its own, smaller limit before it is produced (protocol/records.py).
        "message.max.bytes": PRODUCER_MAX_BYTES,
    })
    if transactional_id is not None:
        settings["transactional.id"] = transactional_id
        # A killed producer's open transaction blocks read_committed readers until this expires.
        settings["transaction.timeout.ms"] = config.values["kafka.transaction_timeout_ms"]
        # Latency: a transaction begun just after the last one committed finds the coordinator still
        # writing that one's markers, gets CONCURRENT_TRANSACTIONS on its offsets (or partitions) and
        # is retried after this back-off: at librdkafka's default of 100 ms, one step in ten waited
        # 100 ms here (Kafka's own client retries that error after 20 ms: KAFKA-5477). The markers take
        # a few ms on a busy machine: retried after 1 ms, a whole transaction (begin, a record, offsets,
        # commit) took 3.9 ms instead of 8.5 at 5 ms (benchmarks/README.md). Real failures still back off
        # exponentially, up to 100 ms here instead of 1 s. kafka.properties may set either.
        if "retry.backoff.ms" not in settings:  # a back-off set in kafka.properties keeps librdkafka's cap
            settings["retry.backoff.ms"] = 1
            settings.setdefault("retry.backoff.max.ms", 100)
    settings.update(extra)
    return Producer(settings)


# How long an idle fetch waits at the broker. A waiting fetch returns as soon as a record (or a
# transaction's commit marker) is readable, whatever the wait, so the wait costs no latency to what
# arrives; but the broker answers one request of a connection at a time, and an idle consumer asks
# anew when its wait runs out. So:
# - a consumer that follows its partitions and asks nothing else on its connection waits long: each one
#   idle then costs the broker a few requests a second at most instead of 20. How long depends on whether
#   its partitions change while it waits, since librdkafka fetches a partition it was just given (or
#   that it resumed) only once the fetch waiting at the broker returns:
#   - in a group (the router's, scheduler's, projector's and worker's loops) 500 ms: a rebalance hands a
#     member new partitions at any time, and failover (5 s) includes that wait. The worker's loop also
#     pauses and resumes its partitions; it reads ahead enough commands to cover the wait
#     (worker/service.py);
#   - alone, assigned once and for good (the definition followers, the worker's control reader, a
#     listener) 5 s: nothing it is given waits on it, so its idle cost is a fetch every 5 s;
# - a consumer that reads to the end, or asks for offsets and watermarks between fetches (readers)
#   waits short: its end of partition comes and its questions are answered at most that long after.
# kafka.properties may set fetch.wait.max.ms for every consumer (benchmarks/README.md measures both).
FOLLOW_FETCH_WAIT_MS = 500
LISTEN_FETCH_WAIT_MS = 5000
READ_FETCH_WAIT_MS = 50


def consumer(config: Config, *, role: str = "consumer", group_id: str | None = None,
             read_committed: bool = True, follow: bool = False,
             settings: dict[str, Any] | None = None) -> Consumer:
    """A consumer; `follow` for one that only fetches, so waits long between idle fetches (above): a
    group member (`group_id`) FOLLOW_FETCH_WAIT_MS, one without a group LISTEN_FETCH_WAIT_MS. `settings`
    adds or replaces librdkafka properties for this one client."""
    extra = settings or {}
    wait = READ_FETCH_WAIT_MS if not follow else FOLLOW_FETCH_WAIT_MS if group_id else LISTEN_FETCH_WAIT_MS
    conf = {"fetch.wait.max.ms": wait, **_base(config, role)}
    conf.update({
        # A group is required by librdkafka even for assign()-only readers; it commits nothing then.
        "group.id": group_id or f"aiflow-reader-{role}",
        # Offsets are committed by the owner of the loop (in a transaction where it matters), never behind its back.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Exactly-once: records of aborted or still-open transactions are never seen.
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        # Failover bound: how long a killed member keeps its partitions.
        "session.timeout.ms": config.values["kafka.session_timeout_ms"],
        "heartbeat.interval.ms": max(100, config.values["kafka.session_timeout_ms"] // 3),
        "auto.offset.reset": "earliest",
    })
    conf.update(extra)
    return Consumer(conf)


def admin(config: Config, **extra: Any) -> AdminClient:
    settings = _base(config, "admin")
    settings.update(extra)
    return AdminClient(settings)


def probe(config: Config) -> AdminClient:
    """An admin client for questions whose refusal is itself the answer (is the cluster there? who is in a
    group?): librdkafka's log and the outage report stay quiet while a broker starts or is down."""
    return admin(config, log_level=0, error_cb=_ignore)


def check_reachable(config: Config, timeout: float = 5.0, topic: str | None = None,
                    client: AdminClient | None = None) -> ClusterMetadata:
    """Raise KafkaUnavailable with what to do when the configured cluster does not answer; else its answer, the
    cluster's metadata (of `topic` alone, when given: one question then tells its partitions too). Asked of
    `client` when given (a `probe`), else of a probe made for it."""
    try:
        return (client if client is not None else probe(config)).list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        hint = ("start one with `aiflow broker start --daemon`" if config.uses_local_broker
                else "check AIFLOW_KAFKA_BOOTSTRAP and kafka.properties")
        raise KafkaUnavailable(f"Kafka at {config.bootstrap} does not answer ({exc.args[0]}): {hint}") from None


def _ignore(_error: object) -> None:
    pass


def wait_until_reachable(config: Config, stop: threading.Event, say: Callable[[str], None] | None = None,
                         every: float = 30.0) -> bool:
    """Return True once the cluster answers, False if `stop` is set first. While it does not, log which
    address is awaited and why (at once, then every `every` seconds) and pass the same line to `say`."""
    started = time.monotonic()
    last_line = -every
    while not stop.is_set():
        try:
            check_reachable(config, timeout=3.0)
        except KafkaUnavailable as exc:
            now = time.monotonic()
            line = f"waiting for Kafka at {config.bootstrap} ({now - started:.0f} s so far): {exc}"
            if say is not None:
                say(line)
            if now - last_line >= every:
                logging.getLogger("aiflow.kafka").warning("%s", line)
                last_line = now
            stop.wait(1.0)
            continue
        if time.monotonic() - started > 1.0:
            logging.getLogger("aiflow.kafka").warning("Kafka at %s answers, after %.0f s", config.bootstrap,
                                                      time.monotonic() - started)
        return True
    return False


def take(consumer: Consumer, max_records: int, timeout: float) -> list[Message]:
    """Wait up to `timeout` for one record, then take what else is already there (up to `max_records`).

    Latency: `Consumer.consume(n, timeout)` waits for the whole timeout unless n records arrive, so a
    lone record would sit for up to `timeout` at every stage of the pipeline. This returns it at once.
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    if max_records <= 1:
        return [first]
    return [first, *consumer.consume(max_records - 1, timeout=0)]
