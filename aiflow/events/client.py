"""The event client: send events, listen to them on a background thread, list the history.

Guarantees:
- `send_event` returns only when the event is durable (acknowledged by every in-sync replica), with
  its partition, offset and the broker's create_time. The idempotent producer never duplicates a
  send because of its own retries.
- A listener sees every committed event of its namespace and keys from its start position on, in
  order per key (one key lives in one partition). A record that is not an event is passed over (the
  router, which owns the events topic, dead-letters it) and the listener carries on. Reading never
  writes anything: not to the dead-letter topic either.
- An event over the size limit (protocol.MAX_EVENT_BYTES, key, value and context as encoded) or
  whose text cannot be encoded is refused with an EventError naming the limit, before anything is sent.
- Namespaces are isolated: a listener and `list_events` see only events of their namespace.

Inside a task (the worker sets `AIFLOW_EXECUTION_ID` and friends in its environment) the client takes
Kafka's address from the configuration in that environment and stamps each event with the task's
namespace, workflow, execution, task and try, which scopes it to that execution, and with the task's
namespace in its context (`aiflow.task_namespace`). A task of an isolated namespace
(`worker.isolated_namespaces`) may send events only into its namespace, and read only its events:
the client refuses anything else with an EventError, before anything is sent. This check is on the
task's side of the wire; the router checks again (docs/operations.md says what either check is worth).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from aiflow.config import Config
from aiflow.errors import EventError, RecordError
from aiflow.events.context import TASK_NAMESPACE_CONTEXT, TaskContext
from aiflow.protocol.deadletter import decode_or_dead_letter
from aiflow.protocol.forwarding import EventWriter
from aiflow.protocol.messages import Event, checked_event_bytes, new_id
from aiflow.protocol.records import MAX_RECORD_BYTES, NAMESPACE_HEADER, Header
from aiflow.protocol.topics import EVENTS, topic_name

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

log = logging.getLogger(__name__)


def load_kafka() -> None:
    """Import what the client needs to reach Kafka (confluent-kafka and aiflow's Kafka helpers).

    Importing this module does not: workflow files import it (the tutorial's, through
    `ai_flow.notification`), and loading a file to check it at upload never sends an event, so it need
    not pay for confluent-kafka (about 40 ms). The methods import it when first used; the worker's fork
    server calls this once, so that no try pays for it either."""
    import confluent_kafka  # noqa: F401

    from aiflow.kafka import clients, sending, topics  # noqa: F401


def _partition_moving(error: KafkaError) -> bool:
    """What a partition answers while it is being created or its leader moves: worth a retry."""
    from confluent_kafka import KafkaError

    return error.code() in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                            KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT)


class EventProcessor(Protocol):
    def process(self, events: list[Event]) -> None: ...


class ListenerProcessor:
    """Base class of what a listener calls: override `process`, which gets each batch of events."""

    def process(self, events: list[Event]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define process(events)")


class EventClient:
    """Sends and reads events of one namespace (the task's, the given one, or the configured default)."""

    def __init__(self, config: Config | None = None, namespace: str | None = None,
                 sender: str | None = None) -> None:
        self.config = config or Config.load()
        self.task = TaskContext.from_env()
        self.namespace = namespace or (self.task.namespace if self.task else self.config.namespace)
        self.sender = sender or (self.task.sender if self.task else None)
        self.topic = topic_name(self.config, EVENTS)
        self._producer: Producer | None = None
        self._producer_lock = threading.Lock()
        self._listeners: dict[str, _Listener] = {}
        self._closed = False

    # -- sending ---------------------------------------------------------------------------
    def _get_producer(self) -> Producer:
        with self._producer_lock:
            if self._producer is None:
                from aiflow.kafka import clients

                clients.check_reachable(self.config)  # a clear error now rather than a timeout later
                self._producer = clients.producer(self.config, role="events")
            return self._producer

    def _check_namespace(self, namespace: str, doing: str) -> None:
        """EventError if this process is a task bound to its namespace and `namespace` is another."""
        task = self.task
        if task is not None and task.isolated and namespace != task.namespace:
            raise EventError(f"task {task.workflow}/{task.task} of namespace {task.namespace!r} may not {doing} "
                             f"namespace {namespace!r}: {task.namespace!r} is isolated (worker.isolated_namespaces)")

    def _new_event(self, key: str, value: str | None, namespace: str | None,
                   context: Mapping[str, str] | None) -> Event:
        task = self.task
        namespace = namespace or self.namespace
        self._check_namespace(namespace, "send events into")
        stamped = dict(context or {})
        if task is not None:
            stamped[TASK_NAMESPACE_CONTEXT] = task.namespace
        return Event(key=key, value=value, namespace=namespace, sender=self.sender,
                     context=stamped, send_time=datetime.now(timezone.utc),
                     workflow=task.workflow if task else None, execution_id=task.execution_id if task else None,
                     task=task.task if task else None, try_number=task.try_number if task else None)

    def send_event(self, key: str, value: str | None = None, *, namespace: str | None = None,
                   context: Mapping[str, str] | None = None) -> Event:
        """Send one event; returns when it is durable, with its offset and create_time."""
        return self.send_events([(key, value)], namespace=namespace, context=context)[0]

    def send_events(self, items: Iterable[tuple[str, str | None]], *, namespace: str | None = None,
                    context: Mapping[str, str] | None = None) -> list[Event]:
        """Send many events in one batch; returns when all are durable, in the order given. Every event
        is checked before any is sent."""
        self._check_open()
        shared = self._new_event("-", None, namespace, context)  # what the batch's events have in common
        try:
            writer = EventWriter(shared)
        except RecordError as exc:
            raise EventError(f"events cannot be encoded: {exc}") from None
        namespace_bytes = shared.namespace.encode("utf-8", errors="replace")
        header: list[Header] = [(NAMESPACE_HEADER, namespace_bytes)]
        overhead = len(NAMESPACE_HEADER) + len(namespace_bytes)
        batch: list[tuple[str, str, str | None, bytes, bytes]] = []  # id, key, value, key's bytes, the event's bytes
        for key, value in items:
            event_id = new_id()
            data = checked_event_bytes(key, value, lambda: writer.encode(event_id, key, value))  # noqa: B023
            key_bytes = key.encode("utf-8")
            if len(key_bytes) + len(data) + overhead > MAX_RECORD_BYTES:
                raise EventError(f"event {key[:80]!r} is over the limit of {MAX_RECORD_BYTES:,} bytes for a record "
                                 "(its key counts twice: as the record's key and in the event)")
            batch.append((event_id, key, value, key_bytes, data))
        from aiflow.kafka import sending

        producer = self._get_producer()
        failures: list[str] = []
        stored: list[tuple[int, int, int] | None] = [None] * len(batch)  # partition, offset, broker time (ms)

        def delivered(index: int, err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(f"{batch[index][1]}: {err.str()}")
            else:
                stored[index] = (msg.partition() or 0, msg.offset() or 0, msg.timestamp()[1])

        for index, (_, _, _, key_bytes, data) in enumerate(batch):
            sending.produce_bytes(producer, self.topic, key_bytes, data, header,
                                  on_delivery=functools.partial(delivered, index))
        remaining = producer.flush(60)
        if remaining or failures:
            raise EventError(f"events not stored in {self.topic} at {self.config.bootstrap}: "
                             f"{failures or f'{remaining} not acknowledged within 60 s'}")
        times: dict[int, datetime] = {}
        events = []
        for (event_id, key, value, _, _), position in zip(batch, stored, strict=True):
            assert position is not None  # flushed without failures: every record was acknowledged
            partition, offset, millis = position
            created = times.get(millis)
            if created is None:
                created = times[millis] = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
            events.append(Event(key=key, value=value, namespace=shared.namespace, sender=shared.sender,
                                workflow=shared.workflow, execution_id=shared.execution_id, task=shared.task,
                                try_number=shared.try_number, context=dict(shared.context), event_id=event_id,
                                send_time=shared.send_time, create_time=created, partition=partition, offset=offset))
        return events

    # -- listening -------------------------------------------------------------------------
    def register_listener(self, listener_processor: EventProcessor, event_keys: Sequence[str] | None = None, *,
                          namespace: str | None = None, begin_time: datetime | None = None,
                          begin_offset: int | Mapping[int, int] | None = None) -> str:
        """Call `listener_processor.process(events)` on a background thread for each batch of events.

        Starts after the newest event by default; `begin_time` starts at the first event stored at or
        after that time; `begin_offset` at an offset (an int applies to every partition, a mapping
        gives one per partition). `event_keys` None or empty means every key. Returns the listener id.
        """
        self._check_open()
        self._check_namespace(namespace or self.namespace, "listen to events of")
        listener = _Listener(self, listener_processor, set(event_keys or ()), namespace or self.namespace)
        listener.start(self._start_positions(listener.consumer, begin_time, begin_offset))
        self._listeners[listener.id] = listener
        return listener.id

    def unregister_listener(self, listener_id: str) -> None:
        listener = self._listeners.pop(listener_id, None)
        if listener is None:
            raise EventError(f"no listener with id {listener_id!r}")
        listener.stop()

    def _partitions(self, consumer: Consumer) -> list[int]:
        metadata = consumer.list_topics(self.topic, timeout=10)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise EventError(f"topic {self.topic} does not exist: run `aiflow topics create`")
        return sorted(topic.partitions)

    def _start_positions(self, consumer: Consumer, begin_time: datetime | None,
                         begin_offset: int | Mapping[int, int] | None) -> list[TopicPartition]:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        partitions = self._partitions(consumer)
        if begin_offset is not None:
            if isinstance(begin_offset, int):
                return [TopicPartition(self.topic, p, begin_offset) for p in partitions]
            return [TopicPartition(self.topic, p, begin_offset.get(p, OFFSET_BEGINNING)) for p in partitions]
        if begin_time is not None:
            millis = int(begin_time.timestamp() * 1000)
            found = consumer.offsets_for_times([TopicPartition(self.topic, p, millis) for p in partitions],
                                               timeout=10)
            # -1 means no record at or after that time: start at the end.
            return [tp if tp.offset >= 0 else TopicPartition(self.topic, tp.partition, self._end_offset(consumer, tp))
                    for tp in found]
        # "From now": the end offsets as of this call, so an event sent after it returns is seen.
        return [TopicPartition(self.topic, p, self._end_offset(consumer, TopicPartition(self.topic, p)))
                for p in partitions]

    def _end_offset(self, consumer: Consumer, partition: TopicPartition) -> int:
        """The partition's high watermark, retrying the errors a just-created or moving partition gives."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + 15
        while True:
            try:
                return int(consumer.get_watermark_offsets(partition, timeout=10)[1])
            except KafkaException as exc:
                if not _partition_moving(exc.args[0]) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # -- reading the history ---------------------------------------------------------------
    def iter_events(self, *, key: str | None = None, namespace: str | None = None, since: datetime | None = None,
                    follow: bool = False, stop: threading.Event | None = None, sender: str | None = None,
                    begin_offset: int | Mapping[int, int] | None = None) -> Iterator[Event]:
        """Events of one namespace (and key, and sender) from `since` or `begin_offset` (or the
        beginning) to the newest; with `follow`, then wait for new ones until `stop` is set.

        `begin_offset` is a position in the events topic (an int applies to every partition, a
        mapping gives one per partition); with `since` as well, it starts there and skips what is older.
        """
        self._check_open()
        namespace = namespace or self.namespace
        self._check_namespace(namespace, "read events of")
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        from aiflow.kafka import clients

        consumer = clients.consumer(self.config, role="event-reader", settings={"enable.partition.eof": True})
        try:
            if since is not None or begin_offset is not None:
                positions = self._start_positions(consumer, since, begin_offset)
            else:
                positions = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions(consumer)]
            consumer.assign(positions)
            at_end: set[int] = set()
            while True:
                if stop is not None and stop.is_set():
                    return
                msgs = clients.take(consumer, 500, 0.2)
                for msg in msgs:
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            at_end.add(msg.partition() or 0)
                            continue
                        raise EventError(f"reading {self.topic}: {error.str()}")
                    at_end.discard(msg.partition() or 0)
                    event = decode_or_dead_letter(msg, Event.from_record, "event-reader", None)
                    if event is not None and event.namespace == namespace and (key is None or event.key == key) \
                            and (sender is None or event.sender == sender) \
                            and (begin_offset is None or since is None
                                 or (event.create_time is not None and event.create_time >= since)):
                        yield event
                if not follow and len(at_end) == len(positions):
                    return
        finally:
            consumer.close()

    def list_events(self, key: str | None = None, namespace: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, limit: int | None = None, *, sender: str | None = None,
                    begin_offset: int | Mapping[int, int] | None = None) -> list[Event]:
        """Stored events, oldest first: those of `namespace` (and `key`, and `sender`) created in
        [since, until), from `begin_offset` on when given. With `limit`, the newest `limit` of them."""
        found = [e for e in self.iter_events(key=key, namespace=namespace, since=since, sender=sender,
                                             begin_offset=begin_offset)
                 if until is None or (e.create_time is not None and e.create_time < until)]
        found.sort(key=lambda e: (e.create_time or datetime.min.replace(tzinfo=timezone.utc), e.partition, e.offset))
        return found[-limit:] if limit else found

    def count_events(self, key: str | None = None, namespace: str | None = None, since: datetime | None = None,
                     until: datetime | None = None, *, sender: str | None = None,
                     begin_offset: int | Mapping[int, int] | None = None) -> int:
        """How many stored events `list_events` with the same filters would return."""
        return sum(1 for e in self.iter_events(key=key, namespace=namespace, since=since, sender=sender,
                                               begin_offset=begin_offset)
                   if until is None or (e.create_time is not None and e.create_time < until))

    # -- lifecycle -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise EventError("the event client is closed")

    def close(self) -> None:
        """Stop every listener and flush what was sent. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for listener in list(self._listeners.values()):
            listener.stop()
        self._listeners.clear()
        if self._producer is not None:
            self._producer.flush(30)

    def __enter__(self) -> EventClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Listener:
    """One background thread with its own consumer (assigned partitions, no group membership)."""

    def __init__(self, client: EventClient, processor: EventProcessor, keys: set[str], namespace: str) -> None:
        self.id = uuid.uuid4().hex
        self.client = client
        self.processor = processor
        self.keys = keys
        self.namespace = namespace
        from aiflow.kafka import clients

        self.consumer = clients.consumer(client.config, role="listener", follow=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"aiflow-listener-{self.id[:8]}", daemon=True)

    def start(self, positions: list[TopicPartition]) -> None:
        self.consumer.assign(positions)
        self._thread.start()

    def _run(self) -> None:
        from aiflow.kafka import clients

        try:
            while not self._stop.is_set():
                msgs = clients.take(self.consumer, 500, 0.2)
                batch: list[Event] = []
                for msg in msgs:
                    error = msg.error()
                    if error is not None:
                        log.warning("listener %s: %s", self.id[:8], error.str())
                        continue
                    event = decode_or_dead_letter(msg, Event.from_record, f"listener-{self.id[:8]}", None)
                    if event is None or event.namespace != self.namespace:
                        continue
                    if self.keys and event.key not in self.keys:
                        continue
                    batch.append(event)
                if batch:
                    try:
                        self.processor.process(batch)
                    except Exception:
                        log.exception("listener %s: the processor raised; it keeps listening", self.id[:8])
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
