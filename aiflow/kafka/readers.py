"""Readers that own nothing: the scheduler's changelog (state), the workflow definitions and the
dead-letter topic.

None of them owns its topic (the projector owns state, the router workflows: protocol/topics.py),
so a record they cannot read is skipped here and dead-lettered by the owner; the dead-letter topic
is read as it is, never decoded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from aiflow.config import Config
from aiflow.kafka import clients, topics
from aiflow.protocol.deadletter import DeadLetter, decode_or_dead_letter
from aiflow.protocol.messages import StateRecord, WorkflowDefinition, WorkflowDeleted, read_workflow_record

log = logging.getLogger(__name__)

WorkflowId = tuple[str, str]


def read_state(config: Config, partitions: Iterable[int], reporter: str = "state-reader",
               timeout: float = 60.0) -> dict[tuple[str, str], tuple[int, StateRecord]]:
    """(entity, id) -> (partition, latest committed record) of every entity in these partitions
    (read_committed, to the end); tombstones and unreadable records are passed over. KafkaException
    if the end is not reached within `timeout` seconds of no progress (Kafka away): the caller retries."""
    wanted = set(partitions)
    reader = clients.consumer(config, role="state-reader", settings={"enable.partition.eof": True})
    topic = topics.name(config, topics.STATE)
    reader.assign([TopicPartition(topic, p, 0) for p in wanted])
    at_end: set[int] = set()
    latest: dict[tuple[str, str], tuple[int, StateRecord]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < len(wanted):
            if time.monotonic() > deadline:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"reading {topic} made no progress in "
                                                                       f"{timeout:.0f} s"))
            msgs = reader.consume(1000, timeout=0.5)
            if any(m.error() is None for m in msgs):
                deadline = time.monotonic() + timeout
            for msg in msgs:
                error = msg.error()
                partition = msg.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(partition)
                    continue
                at_end.discard(partition)
                if msg.value() is None:
                    continue
                record = decode_or_dead_letter(msg, StateRecord.from_record, reporter, None)
                if record is None:
                    continue
                key = (record.entity, record.entity_id)
                known = latest.get(key)
                if known is None or record.version >= known[1].version:
                    latest[key] = (partition, record)
    finally:
        reader.close()
    return latest


def read_dead_letters(config: Config, limit: int | None = None) -> list[DeadLetter]:
    """The committed records of the dead-letter topic, oldest first (the newest `limit` of them)."""
    reader = clients.consumer(config, role="dlq-reader", settings={"enable.partition.eof": True})
    topic = topics.name(config, topics.DLQ)
    low, high = reader.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    start = max(low, high - limit) if limit else low
    found: list[DeadLetter] = []
    if high > start:
        reader.assign([TopicPartition(topic, 0, start)])
        done = False
        deadline = time.monotonic() + 60
        while not done and time.monotonic() < deadline:
            for msg in reader.consume(500, timeout=1.0):
                error = msg.error()
                if error is not None:
                    done = done or error.code() == KafkaError._PARTITION_EOF
                    continue
                found.append(DeadLetter.from_record(msg))
    reader.close()
    return found[-limit:] if limit else found


class DefinitionFollower:
    """Reads the workflows topic from the start, then keeps following it: the current definition of
    every workflow, and a callback on each change (None: deleted)."""

    def __init__(self, config: Config, reporter: str = "definitions",
                 on_change: Callable[[WorkflowId, WorkflowDefinition | None], None] | None = None) -> None:
        self.definitions: dict[WorkflowId, WorkflowDefinition] = {}
        self.reporter = reporter
        self.on_change = on_change
        self.consumer = clients.consumer(config, role=f"{reporter}-definitions",
                                         settings={"enable.partition.eof": True})
        self.consumer.assign([TopicPartition(topics.name(config, topics.WORKFLOWS), 0, 0)])
        self.caught_up = False

    def poll(self, timeout: float = 0.0) -> None:
        for msg in self.consumer.consume(1000, timeout=timeout):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self.caught_up = True
                continue
            found = decode_or_dead_letter(msg, read_workflow_record, self.reporter, None)
            if found is None:
                continue
            if isinstance(found, WorkflowDeleted):
                self.definitions.pop(found.workflow_id, None)
                if self.on_change:
                    self.on_change(found.workflow_id, None)
            else:
                self.definitions[found.workflow_id] = found
                if self.on_change:
                    self.on_change(found.workflow_id, found)

    def catch_up(self, stop: threading.Event | None = None) -> None:
        """Read to the end of the topic (as long as Kafka takes to answer), unless `stop` is set first."""
        while not self.caught_up and not (stop is not None and stop.is_set()):
            self.poll(timeout=0.5)

    def close(self) -> None:
        self.consumer.close()
