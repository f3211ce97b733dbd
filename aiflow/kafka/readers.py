"""Readers that own nothing: the scheduler's changelog (state), the workflow definitions, the
dead-letter topic and the task output of the logs topic.

None of them owns its topic (the projector owns state, the router workflows: protocol/topics.py),
so a record they cannot read is skipped here and dead-lettered by the owner; the dead-letter topic
is read as it is, never decoded, and the logs topic has no owner: its readers skip what they cannot
read and nobody dead-letters it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from aiflow.config import Config
from aiflow.errors import KafkaUnavailable
from aiflow.kafka import clients, topics
from aiflow.protocol.deadletter import DeadLetter, decode_or_dead_letter
from aiflow.protocol.messages import LogChunk, StateRecord, WorkflowDefinition, WorkflowDeleted, read_workflow_record
from aiflow.protocol.records import log_partition, try_key

log = logging.getLogger(__name__)

WorkflowId = tuple[str, str]


# A header the scheduler puts on the state record of an execution that is settled (finished, no try
# still stopping): a restoring scheduler does not keep those, so it learns their ids from the key
# and this header without decoding their bodies.
SETTLED_HEADER = "aiflow.settled"


def read_state(config: Config, partitions: Iterable[int], reporter: str = "state-reader",
               timeout: float = 60.0, settled: dict[str, int] | None = None,
               keep_tombstoned: bool = False) -> dict[tuple[str, str], tuple[int, StateRecord]]:
    """(entity, id) -> (partition, latest committed record) of every entity in these partitions
    (read_committed, to the end). KafkaException if the end is not reached within `timeout` seconds
    of no progress (Kafka away): the caller retries.

    The latest record of a key is the last one in its partition, as compaction keeps it; only that
    one is decoded, and unreadable ones are passed over. A key whose last record is a tombstone (the
    projector wrote its settled execution to the database) is left out, unless `keep_tombstoned`:
    then its last record before the tombstone is given, where compaction has not removed it yet.
    With a `settled` dict, the records marked settled (SETTLED_HEADER) are not decoded either: their
    ids go into it, with their partitions, instead of into the result."""
    wanted = set(partitions)
    reader = clients.consumer(config, role="state-reader", settings={"enable.partition.eof": True})
    topic = topics.name(config, topics.STATE)
    reader.assign([TopicPartition(topic, p, 0) for p in wanted])
    at_end: set[int] = set()
    # Keys are (partition, record key), as compaction sees them: the last record of each, and (in order
    # of reading) the keys whose last record is marked settled and is left undecoded.
    last: dict[tuple[int, bytes | str | None], Message] = {}
    skipped: dict[tuple[int, bytes | str | None], None] = {}
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
                key = (partition, msg.key())
                if msg.value() is None:  # a tombstone
                    if not keep_tombstoned:
                        last.pop(key, None)
                    skipped.pop(key, None)
                elif settled is not None and _marked_settled(msg):
                    last.pop(key, None)
                    skipped[key] = None
                else:
                    last[key] = msg
                    skipped.pop(key, None)
    finally:
        reader.close()
    latest: dict[tuple[str, str], tuple[int, StateRecord]] = {}
    for msg in last.values():
        record = decode_or_dead_letter(msg, StateRecord.from_record, reporter, None)
        if record is not None:
            latest[(record.entity, record.entity_id)] = (msg.partition() or 0, record)
    if settled is not None:
        for partition, raw in skipped:
            text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
            if text is not None:
                settled[text] = partition
    return latest


def _marked_settled(msg: Message) -> bool:
    headers = msg.headers()
    return headers is not None and any(pair[0] == SETTLED_HEADER for pair in headers)


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
    every workflow, and a callback on each change (None: deleted).

    A service's follower (`follow`, the default) waits long between idle fetches (clients.consumer), so
    `read_to_end` asks where the topic ends through a client of its own: asked of the follower's consumer,
    the question would wait behind its idle fetch. A reader that only catches up once (`follow=False`)
    waits short, so its end of the topic comes soon after it is there."""

    def __init__(self, config: Config, reporter: str = "definitions",
                 on_change: Callable[[WorkflowId, WorkflowDefinition | None], None] | None = None, *,
                 follow: bool = True) -> None:
        self.config = config
        self.definitions: dict[WorkflowId, WorkflowDefinition] = {}
        self.changes = 0  # how many definitions and deletions it has read: a cheap "anything new?"
        # The snapshots each workflow's definitions named since this reader started, by version: (uri,
        # sha256, workflow file), for definitions written before they listed every snapshot that may run.
        self._seen: dict[WorkflowId, dict[int, tuple[str, str, str]]] = {}
        self.reporter = reporter
        self.on_change = on_change
        self.consumer = clients.consumer(config, role=f"{reporter}-definitions", follow=follow,
                                         settings={"enable.partition.eof": True})
        self._follow = follow
        self._ends: Consumer | None = None  # asks where the topic ends (never assigned: it fetches nothing)
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
            self.changes += 1
            if isinstance(found, WorkflowDeleted):
                self.definitions.pop(found.workflow_id, None)
                if self.on_change:
                    self.on_change(found.workflow_id, None)
            else:
                self.definitions[found.workflow_id] = found
                self._seen.setdefault(found.workflow_id, {})[found.version] = (
                    found.snapshot_uri, found.snapshot_sha256, found.workflow_file)
                if self.on_change:
                    self.on_change(found.workflow_id, found)

    def announced(self, workflow: WorkflowId, uri: str, sha256: str, workflow_file: str,
                  version: int | None = None) -> bool:
        """Whether the workflows topic says this snapshot (of this version, when given) of the workflow
        may run: the workflow exists and its definition lists the snapshot."""
        definition = self.definitions.get(workflow)
        if definition is None:
            return False
        if definition.snapshots:
            return definition.announces(uri, sha256, workflow_file, version)
        return any((uri, sha256, workflow_file) == ref and version in (None, v)
                   for v, ref in self._seen.get(workflow, {}).items())

    def read_to_end(self, timeout: float = 10.0, stop: threading.Event | None = None) -> bool:
        """Read what the topic holds now, waiting at most `timeout` (or until `stop` is set): a definition
        published just before a command that names it may not have been read yet. False if the end could
        not be reached."""
        tp = TopicPartition(topics.name(self.config, topics.WORKFLOWS), 0)
        deadline = time.monotonic() + timeout
        try:
            end = self._ask_end().get_watermark_offsets(tp, timeout=timeout)[1]
            while end > 0 and self.consumer.position([tp])[0].offset < end:
                if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                    return False
                self.poll(timeout=0.1)
        except KafkaException as exc:
            log.warning("%s: could not read the workflows topic to its end: %s", self.reporter, exc)
            return False
        self.caught_up = True
        return True

    def catch_up(self, stop: threading.Event | None = None) -> None:
        """Read to the end of the topic (as long as Kafka takes to answer), unless `stop` is set first.
        The end is asked, not waited for: the end-of-partition notice comes with a fetch's answer, and
        a follower's fetch at the end answers only when its wait (seconds: clients.py) runs out."""
        while not self.caught_up and not (stop is not None and stop.is_set()):
            if not self.read_to_end(timeout=5.0, stop=stop):
                self.poll(timeout=0.5)

    def _ask_end(self) -> Consumer:
        if not self._follow:
            return self.consumer
        if self._ends is None:
            self._ends = clients.consumer(self.config, role=f"{self.reporter}-definitions-end")
        return self._ends

    def close(self) -> None:
        if self._ends is not None:
            self._ends.close()
        self.consumer.close()


class TryLogReader:
    """One try's output from the logs topic, from byte `start` of its log file on.

    It reads the one partition of the try's key (`records.log_partition`), from the first record at or
    after `since` (the try's start, less a margin for clocks; the partition's start without it), and
    keeps the chunks of that key. Chunks carry their position in the file, so what was shipped twice
    is returned once. `ended` once the try's last chunk is read; `caught_up` while the reader is at the
    partition's end (nothing more there now).
    """

    # Records are stamped by the worker's clock, the try's start by the scheduler's: read from a little
    # before the start, so a worker whose clock is behind loses nothing.
    CLOCK_MARGIN = 300.0

    def __init__(self, config: Config, execution_id: str, task: str, try_number: int, *, start: int = 0,
                 since: datetime | None = None) -> None:
        self.key = try_key(execution_id, task, try_number)
        self._key_bytes = self.key.encode("utf-8", errors="surrogatepass")
        self.position = max(0, start)
        self.ended = False
        self.caught_up = False
        self.found = False  # a chunk of this try was read
        topic = topics.name(config, topics.LOGS)
        try:
            partition = log_partition(self.key, topics.partition_count(config, topics.LOGS))
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot read {topic} at {config.bootstrap}: {exc.args[0]}") from None
        self.consumer = clients.consumer(config, role="log-reader", settings={"enable.partition.eof": True})
        offset = OFFSET_BEGINNING
        try:
            if since is not None:
                moment = int((since.timestamp() - self.CLOCK_MARGIN) * 1000)
                found = self.consumer.offsets_for_times([TopicPartition(topic, partition, moment)], timeout=10)[0]
                # -1: no record that recent; the try's chunks, if any come, come after the current end.
                offset = found.offset if found.offset >= 0 else OFFSET_END
        except KafkaException as exc:
            self.consumer.close()
            raise KafkaUnavailable(f"cannot read {topic} at {config.bootstrap}: {exc.args[0]}") from None
        self.consumer.assign([TopicPartition(topic, partition, offset)])

    def read(self, timeout: float) -> bytes:
        """The try's output that came since the last call (waiting up to `timeout` for records)."""
        out = bytearray()
        for msg in self.consumer.consume(1000, timeout=timeout):
            error = msg.error()
            if error is not None:
                self.caught_up = self.caught_up or error.code() == KafkaError._PARTITION_EOF
                continue
            self.caught_up = False
            raw = msg.key()
            if (raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else raw) != self._key_bytes:
                continue  # another try's chunk in the same partition
            chunk = decode_or_dead_letter(msg, LogChunk.from_record, "log-reader", None)
            if chunk is None:
                continue
            self.found = True
            if chunk.end_position > self.position:
                out += chunk.data[max(0, self.position - chunk.position):]
                self.position = chunk.end_position
            self.ended = self.ended or chunk.end
        return bytes(out)

    def close(self) -> None:
        self.consumer.close()
