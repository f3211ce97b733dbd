"""Prometheus metrics of aiflow's services, each defined once here, and the `/metrics` endpoints.

Every long-running process (`aiflow scheduler start`, `aiflow worker start`, `aiflow standalone`)
serves the process's metrics on a port of its own (`metrics.scheduler_port`, `metrics.worker_port`;
standalone uses the scheduler's); the web server mounts them with `mount_metrics(app)`.

Counts follow the transactions. What a step of a transactional loop counts (an event routed, a try
started, a dead letter) waits in the loop's `LoopMetrics` and is added only once the step's
transaction has committed, so a step that is rolled back and done again counts once, as Kafka
applies it once. A metric never stops a service: the endpoint that cannot listen is logged and left
out, and the lag collector logs what it cannot read and tries again.

The event-to-running latency (`aiflow_event_to_running_seconds`): for a try that an event started
(the event made a rule start the task, or a trigger start the execution whose first tries these are),
the time from the event's send time to the create time of the worker's RUNNING report for that try.
The send time is stamped by aiflow's event client when it sends the event (a plain event written by
any other producer has none: the router stamps the time it reads it, so time spent waiting for the
router is not counted there); the report's create time is the worker's clock when it committed
taking the START, just before the task's process starts. The scheduler observes the difference when
it applies that report; the two clocks are different machines' in a cluster. Tries started by commands, retries,
schedules or other tries are not counted; nor are tries whose RUNNING reaches another scheduler
instance than the one that started them (after a failover): the link between the try and its event
lives in the memory of the instance that made it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram, make_asgi_app, start_http_server

from aiflow.protocol import topics as roles
from aiflow.protocol.deadletter import REPORTER
from aiflow.protocol.messages import InboxKind
from aiflow.protocol.records import Record
from aiflow.sdk.status import TASK_FINISHED_SET, TaskStatus

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from confluent_kafka import Message

    from aiflow.config import Config
    from aiflow.protocol.messages import InboxMessage

log = logging.getLogger(__name__)

# -- the metrics -------------------------------------------------------------------------------
EVENTS_ROUTED = Counter(
    "aiflow_router_records", "Records the router took, by outcome: routed (to at least one workflow's inbox), "
    "unrouted (no workflow listens), dead_lettered, checked (a control or workflows record read to check it)",
    ["outcome"])
SCHEDULER_INPUTS = Counter(
    "aiflow_scheduler_inputs", "Inbox messages the scheduler applied, by kind (EVENT, COMMAND, TASK_STATUS, "
    "HEARTBEAT, WORKER)", ["kind"])
TRIES_STARTED = Counter("aiflow_tries_started", "Task tries the scheduler sent a START command for")
TRIES_FINISHED = Counter("aiflow_tries_finished", "Task tries that ended, by final status (SUCCESS, FAILED, "
                         "STOPPED, ...), as the scheduler applied it", ["status"])
EVENT_TO_RUNNING = Histogram(
    "aiflow_event_to_running_seconds", "From an event's create time to the worker's RUNNING report of a try "
    "that event started (its send time to the RUNNING report)",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0))
STATE_RESTORE_SECONDS = Histogram(
    "aiflow_scheduler_state_restore_seconds", "How long a scheduler took to restore the state of partitions "
    "it was assigned", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0))
TRANSACTION_SECONDS = Histogram(
    "aiflow_transaction_commit_seconds", "How long a service's transactional loop took to commit a step, by role "
    "(router, scheduler, projector, worker, bridge-NAME for a connector): the consumer's positions sent to the "
    "transaction, then the commit; "
    "what the step wrote is readable from then on. Each event's way to a task holds three (router, scheduler, "
    "worker)", ["role"],
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
DEAD_LETTERS = Counter("aiflow_dead_letters", "Records written to the dead-letter topic, by the service that "
                       "wrote them", ["reporter"])
WORKER_SLOTS = Gauge("aiflow_worker_slots", "Slots of this process's workers, busy (a try runs or waits to be "
                     "reported) or free", ["state"])
CONSUMER_LAG = Gauge("aiflow_consumer_lag", "Records of a partition that a consumer group has not committed yet "
                     "(end offset minus committed offset; a caught-up transactional reader may show 1: the "
                     "commit marker)", ["group", "topic", "partition"])
LAG_UPDATED = Gauge("aiflow_consumer_lag_updated_timestamp_seconds", "When aiflow_consumer_lag was last read "
                    "from Kafka (Unix time); stale when Kafka does not answer")

# The consumer groups of aiflow's services, after the topic prefix, and the topics each one reads.
GROUP_TOPICS: dict[str, tuple[str, ...]] = {
    "router": (roles.EVENTS, roles.CONTROL, roles.WORKFLOWS),
    "scheduler": (roles.INBOX,),
    "worker": (roles.TASKS,),
    "projector": (roles.STATE,),
}
LAG_INTERVAL = 10.0  # seconds between two readings of the lag: two admin requests per group
_STARTED_KEPT = 100_000  # tries started by an event whose RUNNING is awaited, at most
_FINISHED = frozenset(s.value for s in TASK_FINISHED_SET)


# -- counting inside transactions ------------------------------------------------------------
TryKey = tuple[str, str, int]


class LoopMetrics:
    """What one transactional loop counts during a step, added once the step commits (`apply`) and
    dropped when a new transaction begins without it (`clear`): a rolled-back step counts nothing."""

    def __init__(self, role: str) -> None:
        self.role = role
        self._pending: list[Callable[[], None]] = []
        self._routed: dict[str, int] = {}  # the router's outcomes of the step: one addition each at commit
        self._input: InboxMessage | None = None
        self._event_time: dict[TryKey, float] = {}  # tries an event started -> the event's create time

    def clear(self) -> None:
        self._pending.clear()
        self._routed.clear()
        self._input = None

    def apply(self) -> None:
        pending, self._pending = self._pending, []
        routed, self._routed = self._routed, {}
        for count in pending:
            count()
        for outcome, records in routed.items():
            EVENTS_ROUTED.labels(outcome).inc(records)

    def produced(self, record: Record) -> None:
        """A record written in the step: a dead letter is counted by the service that wrote it."""
        if record.role == roles.DLQ:
            reporter = next((v for k, v in record.headers if k == REPORTER), None)
            name = reporter.decode() if isinstance(reporter, bytes) else (reporter or self.role)
            self._pending.append(DEAD_LETTERS.labels(name).inc)

    def routed(self, msg: Message, records: Sequence[Record], events_topic: str) -> None:
        """What the router made of one record (it is called for each one: counted per step, not per record)."""
        if not records:
            outcome = "checked" if msg.topic() != events_topic else "unrouted"
        elif any(r.role == roles.DLQ for r in records):
            outcome = "dead_lettered"
            for record in records:
                self.produced(record)
        else:
            outcome = "routed"
        self._routed[outcome] = self._routed.get(outcome, 0) + 1

    def applying(self, m: InboxMessage) -> None:
        """The scheduler applies this inbox message; the outputs that follow are its."""
        self._input = m
        self._pending.append(SCHEDULER_INPUTS.labels(m.kind.value).inc)

    def outputs(self, outputs: Iterable[object]) -> None:
        """The core's outputs for one execution: tries started and ended, and the latency."""
        from aiflow.scheduler.core import StartTry, StatusChanged

        m = self._input
        for out in outputs:
            if isinstance(out, StartTry):
                self._pending.append(TRIES_STARTED.inc)
                event_time = _event_time_of(out, m)
                if event_time is not None:
                    key = (out.execution.id, out.task, out.try_number)
                    self._pending.append(partial(self._remember, key, event_time))
            elif isinstance(out, StatusChanged):
                key = (out.execution.id, out.task, out.try_number)
                if out.status in _FINISHED:
                    self._pending.append(TRIES_FINISHED.labels(out.status).inc)
                    self._pending.append(partial(self._forget, key))
                elif out.status == TaskStatus.RUNNING.value and m is not None and m.report is not None and \
                        (m.report.execution_id, m.report.task, m.report.try_number) == key:
                    report_time = m.create_time.timestamp()
                    self._pending.append(partial(self._running, key, report_time))

    def _remember(self, key: TryKey, event_time: float) -> None:
        self._event_time[key] = event_time
        if len(self._event_time) > _STARTED_KEPT:  # RUNNING never came (the START failed at once): forget
            del self._event_time[next(iter(self._event_time))]

    def _forget(self, key: TryKey) -> None:
        self._event_time.pop(key, None)

    def _running(self, key: TryKey, report_time: float) -> None:
        event_time = self._event_time.pop(key, None)
        if event_time is not None:
            EVENT_TO_RUNNING.observe(max(0.0, report_time - event_time))


def _event_time_of(start: Any, m: InboxMessage | None) -> float | None:
    """The create time of the event that started this try, when the input at hand is that event: the
    try's cause (or, for the first tries of an execution a trigger started, the execution's) names it."""
    if m is None or m.kind is not InboxKind.EVENT or m.event is None or not m.source:
        return None
    sent = m.event.create_time or m.event.send_time  # in the inbox an event carries its send time only
    if sent is None:
        return None
    ending = f" at {m.source}"
    attempt = start.execution.latest(start.task)
    if (attempt is not None and attempt.cause.endswith(ending)) or start.execution.cause.endswith(ending):
        return float(sent.timestamp())
    return None


# -- workers' slots ----------------------------------------------------------------------------
_workers: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_worker(worker: Any) -> None:
    """Count this worker's slots in aiflow_worker_slots (the sum over the workers of the process)."""
    _workers.add(worker)


def _slots(busy: bool) -> float:
    workers = list(_workers)
    used = sum(min(len(w.running), w.slots) for w in workers)
    return float(used if busy else sum(w.slots for w in workers) - used)


WORKER_SLOTS.labels("busy").set_function(lambda: _slots(True))
WORKER_SLOTS.labels("free").set_function(lambda: _slots(False))


# -- consumer lag ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group committed nothing there
    end: int
    lag: int


class LagReader:
    """Reads the lag of each of aiflow's consumer groups on each partition of the topics it reads: the
    end offset (last stable, as read_committed readers see it) minus the committed one, or minus the
    start of the partition where the group committed nothing. Its clients are made at the first reading
    and kept for the next ones (a collector reads every 10 s: new clients each time cost more than the
    questions). KafkaException or KafkaUnavailable if Kafka does not answer."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._admin: Any = None
        self._readers: dict[str, Any] = {}  # group -> a consumer of it that never joins

    def read(self, timeout: float = 10.0) -> list[Lag]:
        from confluent_kafka import IsolationLevel, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        from aiflow.kafka import clients, topics

        config = self.config
        if self._admin is None:
            self._admin = clients.admin(config)
        admin = self._admin
        wanted = {topics.name(config, role) for roles_of in GROUP_TOPICS.values() for role in roles_of}
        metadata = admin.list_topics(timeout=timeout).topics
        parts = {t: sorted(metadata[t].partitions) for t in wanted if t in metadata and metadata[t].error is None}
        every = [TopicPartition(t, p) for t, ps in parts.items() for p in ps]
        if not every:
            return []

        def offsets(spec: OffsetSpec) -> dict[tuple[str, int], int]:
            futures = admin.list_offsets({tp: spec for tp in every}, isolation_level=IsolationLevel.READ_COMMITTED,
                                         request_timeout=timeout)
            return {(tp.topic, tp.partition): int(f.result().offset) for tp, f in futures.items()}

        end, start = offsets(OffsetSpec.latest()), offsets(OffsetSpec.earliest())
        found: list[Lag] = []
        for suffix, group_roles in GROUP_TOPICS.items():
            group = f"{config.topic_prefix}-{suffix}"
            names = [topics.name(config, r) for r in group_roles]
            asked = [TopicPartition(t, p) for t in names for p in parts.get(t, [])]
            if not asked:
                continue
            # Asked of a consumer of the group (it never joins: nothing is subscribed), not of the admin
            # client: librdkafka's admin ListConsumerGroupOffsets crashes the process (SIGSEGV in
            # rd_kafka_cgrp_op) when the coordinator answers NOT_COORDINATOR, as a broker just started does
            # (librdkafka issue 5040); a consumer looks the coordinator up again instead.
            reader = self._readers.get(group)
            if reader is None:
                reader = self._readers[group] = clients.consumer(config, role="metrics-lag", group_id=group)
            for tp in reader.committed(asked, timeout=timeout):
                key = (tp.topic, tp.partition)
                if key not in end:
                    continue
                committed = int(tp.offset) if tp.offset is not None and tp.offset >= 0 else None
                lag = end[key] - (committed if committed is not None else start.get(key, 0))
                found.append(Lag(group, tp.topic, tp.partition, committed, end[key], max(0, lag)))
        return sorted(found, key=lambda lag: (lag.group, lag.topic, lag.partition))

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self._admin = None


def consumer_lag(config: Config, timeout: float = 10.0) -> list[Lag]:
    """One reading of every group's lag (LagReader), with clients of its own."""
    reader = LagReader(config)
    try:
        return reader.read(timeout)
    finally:
        reader.close()


class LagCollector:
    """A daemon thread that reads the consumer lag every `interval` seconds into aiflow_consumer_lag.
    Anything that goes wrong is logged (at most once a minute) and tried again at the next reading."""

    def __init__(self, config: Config, interval: float = LAG_INTERVAL) -> None:
        self.config = config
        self.interval = interval
        self._shown: set[tuple[str, str, str]] = set()
        self._last_complaint = 0.0
        self._reader: LagReader | None = None

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="aiflow-metrics-lag", daemon=True)
        thread.start()
        return thread

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.collect()
                stop.wait(self.interval)
        finally:
            self.close()

    def close(self) -> None:
        """Close the clients kept for the next reading (a reading after this makes new ones)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def collect(self) -> None:
        try:
            self._reader = self._reader or LagReader(self.config)
            lags = self._reader.read(timeout=min(10.0, self.interval))
        except Exception as exc:  # Kafka away, or anything else: the service must go on
            self.close()  # the next reading starts with new clients
            if time.monotonic() - self._last_complaint > 60:
                log.warning("metrics: could not read the consumer lag: %s", exc)
                self._last_complaint = time.monotonic()
            return
        shown = set()
        for lag in lags:
            labels = (lag.group, lag.topic, str(lag.partition))
            CONSUMER_LAG.labels(*labels).set(lag.lag)
            shown.add(labels)
        for gone in self._shown - shown:
            try:
                CONSUMER_LAG.remove(*gone)
            except KeyError:
                pass
        self._shown = shown
        LAG_UPDATED.set(time.time())


# -- the endpoints -----------------------------------------------------------------------------
def serve(config: Config, port_key: str, port: int | None = None) -> WSGIServer | None:
    """Serve this process's metrics at http://<metrics.host>:<port>/metrics on a daemon thread (port
    from `port_key` unless given; 0: none). One that cannot listen (the port is taken) is logged and
    left out: the service runs on without it. Returns the server (None if there is none)."""
    port = int(config.values[port_key]) if port is None else port
    if port == 0:
        return None
    host = str(config.values["metrics.host"])
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics: cannot listen on %s:%d (%s); no /metrics here: set %s to a free port, or 0",
                    host, port, exc, port_key)
        return None
    log.info("metrics: http://%s:%d/metrics", host, server.server_port)
    return server


def serve_process(config: Config, port_key: str, stop: threading.Event, lag: bool) -> None:
    """A service process's metrics: the endpoint and, with `lag`, the lag collector (stopped with `stop`)."""
    server = serve(config, port_key)
    if server is None:
        return

    def shut_down() -> None:
        stop.wait()
        server.shutdown()

    threading.Thread(target=shut_down, name="aiflow-metrics-stop", daemon=True).start()
    if lag:
        LagCollector(config).start(stop)


class _Endpoint:
    """prometheus_client's ASGI application as a route's endpoint (a function would be taken for a
    request handler), so `/metrics` answers as it is, without a redirect to `/metrics/`."""

    def __init__(self) -> None:
        self.app = make_asgi_app()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def mount_metrics(app: Any) -> None:
    """Serve the process's metrics at /metrics of a Starlette or FastAPI application (the web
    server's), outside its OpenAPI description; like the health probes it needs no token."""
    from starlette.routing import Route

    app.router.routes.append(Route("/metrics", _Endpoint(), methods=["GET"], include_in_schema=False))
