"""The consume -> decide -> produce loop in Kafka transactions, shared by the router and the scheduler.

Guarantee: the records a step produces and the input offsets it consumed commit together or not at
all (`send_offsets_to_transaction` with the consumer's group metadata). Consumers read
`read_committed`, so nobody sees the output of a step that was aborted. If an instance dies in the
middle of a step, its transaction is aborted (at the latest after `kafka.transaction_timeout_ms`),
its partitions move to another instance, which starts from the last committed offsets: no input is
lost and no output is doubled.

Bad input never stops the loop. A step that raises RecordError (an output over its size limit, a
field that cannot be encoded: errors that no retry can cure) is rolled back, its inputs are taken
again one at a time, and the one input that fails alone goes to the dead-letter topic with the
reason, its offset committed in the same transaction. Transient Kafka errors roll the step back and
retry it after an exponential back-off (0.1 s doubling to 5 s).
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from aiflow.config import Config
from aiflow.errors import RecordError
from aiflow.kafka import clients, sending
from aiflow.protocol.deadletter import dead_letter, reason_of
from aiflow.protocol.records import source_of

log = logging.getLogger(__name__)


def instance_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class Backoff:
    """Exponential back-off between failed attempts: 0.1 s, doubling, at most `cap` seconds."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = 0.0

    def reset(self) -> None:
        self.delay = 0.0

    def wait(self, stop: threading.Event) -> None:
        self.delay = min(self.cap, self.delay * 2) if self.delay else self.first
        stop.wait(self.delay)


class TransactionalLoop:
    """One consumer group member with its own transactional producer."""

    def __init__(self, config: Config, role: str, topic: str | Sequence[str], group: str,
                 on_assign: Callable[[list[TopicPartition]], None] | None = None,
                 on_revoke: Callable[[list[TopicPartition]], None] | None = None) -> None:
        self.config = config
        self.role = role
        self.producer: Producer = clients.producer(
            config, role=role, transactional_id=f"{config.topic_prefix}-{role}-{instance_id()}",
            linger_ms=1)
        self.producer.init_transactions(30)
        self.consumer: Consumer = clients.consumer(config, role=role, group_id=group)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        self.subscribed = False
        self.join()
        self.in_transaction = False
        # The inputs of the open transaction, and how many inputs to take one at a time (after a
        # step failed for good, to find the one input that makes it fail).
        self.batch: list[Message] = []
        self._one_by_one = 0

    def join(self) -> None:
        """Take part in the consumer group (partitions are assigned to this member)."""
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._revoked)
        self.subscribed = True

    def leave(self) -> None:
        """Leave the consumer group: this member's partitions move to the others."""
        self.consumer.unsubscribe()
        self.subscribed = False

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: assigned partitions %s", self.role, [p.partition for p in partitions])
        if self._on_assign:
            self._on_assign(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: partitions %s revoked", self.role, [p.partition for p in partitions])
        if self._on_revoke:
            self._on_revoke(partitions)

    def poll(self, max_records: int = 500, timeout: float = 0.05) -> list[Message]:
        """The next records (errors logged and left out); they are the inputs of the next transaction."""
        msgs = clients.take(self.consumer, 1 if self._one_by_one else max_records, timeout)
        good = []
        for msg in msgs:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: %s", self.role, error.str())
                continue
            good.append(msg)
        if self._one_by_one and good:
            self._one_by_one -= 1
        self.batch = good
        return good

    def begin(self) -> None:
        if not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True

    def commit(self) -> None:
        """Commit what was produced since `begin` together with the consumer's positions."""
        if not self.in_transaction:
            return
        assignment = self.consumer.assignment()
        if assignment:
            positions = [p for p in self.consumer.position(assignment) if p.offset >= 0]
            if positions:
                self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(), 30)
        self.producer.commit_transaction(30)
        self.in_transaction = False
        self.batch = []

    def abort(self) -> None:
        """Abort the open transaction and rewind the consumer to its last committed offsets."""
        if self.in_transaction:
            try:
                self.producer.abort_transaction(30)
            finally:
                self.in_transaction = False
        self.batch = []
        assignment = self.consumer.assignment()
        if assignment:
            for tp in self.consumer.committed(assignment, timeout=30):
                if tp.offset >= 0:
                    self.consumer.seek(tp)
                else:
                    self.consumer.seek(TopicPartition(tp.topic, tp.partition, 0))

    def skip(self, msg: Message, reason: str) -> None:
        """Dead-letter one input and commit its offset, in one transaction of their own."""
        self.begin()
        sending.produce(self.producer, self.config, dead_letter(msg, reason, self.role))
        past = TopicPartition(msg.topic() or "", msg.partition() or 0, (msg.offset() or 0) + 1)
        self.producer.send_offsets_to_transaction([past], self.consumer.consumer_group_metadata(), 30)
        self.producer.commit_transaction(30)
        self.in_transaction = False
        self.batch = []
        self.consumer.seek(past)

    def run_until(self, stop: threading.Event, step: Callable[[], object],
                  recover: Callable[[bool], None] | None = None) -> None:
        """Call `step` until `stop` is set. A failed step is rolled back — by `recover(abortable)` when
        given, which must abort and also undo in-memory state, else by `abort` — and the loop goes on;
        no step runs until the roll-back has succeeded, so no input is passed over. A fatal error
        (fenced by a newer instance) ends the loop."""
        backoff = Backoff()
        roll_back: bool | None = None  # None: nothing to roll back; else whether to abort
        to_skip: tuple[Message, str] | None = None
        while not stop.is_set():
            try:
                if roll_back is not None:
                    self._roll_back(recover, roll_back)
                    roll_back = None
                if to_skip is not None:
                    self.skip(*to_skip)
                    to_skip = None
                step()
                backoff.reset()
            except RecordError as exc:
                batch, roll_back = self.batch, True
                if len(batch) == 1:
                    log.warning("%s: record %s goes to the dead-letter topic: %s", self.role, source_of(batch[0]), exc)
                    to_skip = (batch[0], reason_of(exc))
                elif batch:
                    log.warning("%s: a batch of %d records cannot be written (%s); taking them one at a time",
                                self.role, len(batch), exc)
                    self._one_by_one = len(batch)
                else:
                    log.error("%s: an output cannot be written and no input made it: %s", self.role, exc)
                    backoff.wait(stop)
            except KafkaException as exc:
                if fatal(exc):
                    raise
                log.warning("%s: transaction failed (%s); rolling back", self.role, exc.args[0])
                roll_back = bool(roll_back) or abortable(exc) or self.in_transaction
                backoff.wait(stop)

    def _roll_back(self, recover: Callable[[bool], None] | None, abort: bool) -> None:
        """Abort (when `abort`) and rewind to the committed offsets; `recover` also undoes in-memory state."""
        if recover is not None:
            recover(abort)
        else:
            self.abort()

    def close(self) -> None:
        if self.in_transaction:
            try:
                self.producer.abort_transaction(10)
            except KafkaException:
                pass
        self.consumer.close()
        self.producer.flush(10)


def fatal(exc: KafkaException) -> bool:
    """True when the producer cannot go on (fenced by a newer instance, or a fatal error)."""
    err = exc.args[0]
    return bool(err.fatal()) or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED)


def abortable(exc: KafkaException) -> bool:
    return bool(exc.args[0].txn_requires_abort())
