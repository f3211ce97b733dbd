"""The consume -> decide -> produce loop in Kafka transactions, shared by the router and the scheduler.

Guarantee: the records a step produces and the input offsets it consumed commit together or not at
all (`send_offsets_to_transaction` with the consumer's group metadata). Consumers read
`read_committed`, so nobody sees the output of a step that was aborted. If an instance dies in the
middle of a step, its transaction is aborted (at the latest after `kafka.transaction_timeout_ms`),
its partitions move to another instance, which starts from the last committed offsets: no input is
lost and no output is doubled.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from aiflow.config import Config
from aiflow.kafka import clients

log = logging.getLogger(__name__)


def instance_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class TransactionalLoop:
    """One consumer group member with its own transactional producer."""

    def __init__(self, config: Config, role: str, topic: str, group: str,
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
        self.topic = topic
        self.subscribed = False
        self.join()
        self.in_transaction = False

    def join(self) -> None:
        """Take part in the consumer group (partitions are assigned to this member)."""
        self.consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked,
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
        msgs = clients.take(self.consumer, max_records, timeout)
        good = []
        for msg in msgs:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: %s", self.role, error.str())
                continue
            good.append(msg)
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

    def abort(self) -> None:
        """Abort the open transaction and rewind the consumer to its last committed offsets."""
        if self.in_transaction:
            try:
                self.producer.abort_transaction(30)
            finally:
                self.in_transaction = False
        assignment = self.consumer.assignment()
        if assignment:
            for tp in self.consumer.committed(assignment, timeout=30):
                if tp.offset >= 0:
                    self.consumer.seek(tp)
                else:
                    self.consumer.seek(TopicPartition(tp.topic, tp.partition, 0))

    def run_until(self, stop: threading.Event, step: Callable[[], object],
                  recover: Callable[[bool], None] | None = None) -> None:
        """Call `step` until `stop` is set. A failed transaction is aborted — by `recover(abortable)` when
        given, which must also undo in-memory state — and the loop goes on; a fatal error (fenced by a
        newer instance) ends it."""
        while not stop.is_set():
            try:
                step()
            except KafkaException as exc:
                if fatal(exc):
                    raise
                log.warning("%s: transaction failed (%s); aborting", self.role, exc.args[0])
                if recover is not None:
                    recover(abortable(exc))
                elif abortable(exc) or self.in_transaction:
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
