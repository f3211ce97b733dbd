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

Nothing Kafka does ends the loop. A producer that can no longer be used (fenced, a fatal error such
as OUT_OF_ORDER_SEQUENCE_NUMBER after a broker restart, an abort that fails) is replaced by a new one
with the same transactional id — its `init_transactions` fences the old one and aborts what it left
open — and the consumer is rewound to the committed offsets. The producer is made on first use, not
in the constructor, so a service can be built while the broker is still away. While transactions
fail the loop says so once, then at most every 30 s, and once more when they work again.

Every transactional call runs under a hard deadline (`_Deadline`): librdkafka's
`send_offsets_to_transaction` can block past its own timeout, forever, when the group coordinator
went away during the call (librdkafka issues 5456 and 5511, seen here after a broker restart). A call
past its deadline leaves its producer behind, never touched again, and the loop goes on with a new one.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from aiflow import metrics
from aiflow.config import Config
from aiflow.errors import KafkaUnavailable, RecordError
from aiflow.kafka import clients, sending
from aiflow.kafka.health import ClientHealth, Outage
from aiflow.protocol.deadletter import dead_letter, reason_of
from aiflow.protocol.records import source_of

log = logging.getLogger(__name__)

T = TypeVar("T")
CALL_TIMEOUT = 30.0  # seconds librdkafka is given for a transactional call
OFFSETS_TIMEOUT = 5.0  # for send_offsets_to_transaction, which takes milliseconds unless it hangs
DEADLINE_MARGIN = 5.0  # after which the call is given up for good


class ProducerWedged(KafkaException):
    """A transactional call did not return by its deadline: its producer is left behind."""


class _Deadline:
    """Runs calls on a daemon thread of its own and gives up on one that does not return in time (a
    daemon, so a thread left blocked inside librdkafka never holds up the process's exit)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls = self._start()

    def _start(self) -> queue.Queue[tuple[Callable[[], object], queue.Queue[tuple[bool, object]]]]:
        calls: queue.Queue[tuple[Callable[[], object], queue.Queue[tuple[bool, object]]]] = queue.Queue()
        threading.Thread(target=self._serve, args=(calls,), name=self.name, daemon=True).start()
        return calls

    @staticmethod
    def _serve(calls: queue.Queue[tuple[Callable[[], object], queue.Queue[tuple[bool, object]]]]) -> None:
        while True:
            call, done = calls.get()
            try:
                done.put((True, call()))
            except BaseException as exc:  # handed to the caller, raised there
                done.put((False, exc))

    def run(self, call: Callable[[], T], timeout: float) -> T:
        done: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=1)
        self._calls.put((call, done))
        try:
            ok, result = done.get(timeout=timeout + DEADLINE_MARGIN)
        except queue.Empty:
            self._calls = self._start()  # that thread stays blocked in librdkafka: carry on with a fresh one
            raise ProducerWedged(KafkaError(KafkaError._TIMED_OUT, f"a transactional call did not return within "
                                                                  f"{timeout + DEADLINE_MARGIN:.0f} s")) from None
        if ok:
            return result  # type: ignore[return-value]
        assert isinstance(result, BaseException)
        raise result


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
    """One consumer group member with its own transactional producer. Its consumer follows: it waits long
    between idle fetches (clients.consumer). A loop that pauses and resumes its partitions reads ahead
    enough to cover that wait (the worker's ReadAhead): a resumed partition is fetched only once the fetch
    already waiting at the broker returns."""

    def __init__(self, config: Config, role: str, topic: str | Sequence[str], group: str,
                 on_assign: Callable[[list[TopicPartition]], None] | None = None,
                 on_revoke: Callable[[list[TopicPartition]], None] | None = None) -> None:
        self.config = config
        self.role = role
        self.transactional_id = f"{config.topic_prefix}-{role}-{instance_id()}"
        self._producer: Producer | None = None
        self._abandoned: list[Producer] = []  # wedged producers: kept, so no destructor blocks on them
        self._deadline = _Deadline(f"aiflow-{role}-txn")
        self._producer_health = ClientHealth(f"{role} transactional", config.bootstrap)
        self.outage = Outage(f"{role}: Kafka transactions")
        self.consumer: Consumer = clients.consumer(config, role=role, group_id=group, follow=True)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self.revocations = 0  # how many times partitions were revoked (or lost): read's guard, and a loop's
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        self.subscribed = False
        self._closing = False
        self._callback_error: Exception | None = None
        self.join()
        self.in_transaction = False
        # The inputs of the open transaction, and how many inputs to take one at a time (after a
        # step failed for good, to find the one input that makes it fail).
        self.batch: list[Message] = []
        self._one_by_one = 0
        self.metrics = metrics.LoopMetrics(role)  # what a step counts, added once it commits

    @property
    def producer(self) -> Producer:
        """The transactional producer, made and initialised on first use (KafkaException if it cannot be)."""
        if self._producer is None:
            producer = clients.producer(self.config, role=self.role, transactional_id=self.transactional_id,
                                        linger_ms=1, health=self._producer_health)
            self._producer_health.interrupted = False
            try:
                self._deadline.run(lambda: producer.init_transactions(CALL_TIMEOUT), CALL_TIMEOUT)
            except ProducerWedged:
                self._abandoned.append(producer)
                raise
            self._producer = producer
        return self._producer

    def renew_producer(self, wedged: bool = False) -> None:
        """Drop the producer; the next use makes a new one with the same transactional id, which fences
        the old one and aborts its open transaction. A wedged one is left as it is."""
        old, self._producer = self._producer, None
        self.in_transaction = False
        self.batch = []
        if old is not None and wedged:
            self._abandoned.append(old)
        elif old is not None:
            old.purge()
            old.flush(0)
        log.info("%s: transactional producer renewed", self.role)

    def join(self) -> None:
        """Take part in the consumer group (partitions are assigned to this member)."""
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._revoked)
        self.subscribed = True

    def leave(self) -> None:
        """Leave the consumer group: this member's partitions move to the others.

        librdkafka revokes the assignment, and only then sends LeaveGroup, from inside a poll: without
        one the member would stay in the group until its session timed out, holding up the rebalance,
        and keep an assignment whose offsets the broker refuses (UNKNOWN_MEMBER_ID) once it is out. A
        record such a poll returns is dropped: its offset is not committed, so another member reads it."""
        self.consumer.unsubscribe()
        self.subscribed = False
        self.batch = []
        deadline = time.monotonic() + 10
        while self.consumer.assignment() and time.monotonic() < deadline:
            self.consumer.poll(0.05)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: assigned partitions %s", self.role, [p.partition for p in partitions])
        if self._on_assign and not self._closing:
            self._callback(self._on_assign, partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: partitions %s revoked", self.role, [p.partition for p in partitions])
        self.revocations += 1
        if self._on_revoke and not self._closing:
            self._callback(self._on_revoke, partitions)

    def _callback(self, callback: Callable[[list[TopicPartition]], None], partitions: list[TopicPartition]) -> None:
        """Run a rebalance callback. What it raises is raised again by `poll`, outside librdkafka (an
        exception leaving a callback comes out of the client mangled), so the step rolls back."""
        try:
            callback(partitions)
        except Exception as exc:
            self._callback_error = self._callback_error or exc

    @property
    def one_by_one(self) -> bool:
        """Whether inputs are taken one at a time, to find the one that made a step fail for good."""
        return self._one_by_one > 0

    def poll(self, max_records: int = 500, timeout: float = 0.05) -> list[Message]:
        """The next records (errors logged and left out); they are the inputs of the next transaction."""
        good = self.read(1 if self._one_by_one else max_records, timeout)
        self.taking(good)
        return good

    def read(self, max_records: int, timeout: float) -> list[Message]:
        """The next records (errors logged and left out), read but not yet inputs: `taking` makes them so
        (for a loop that reads ahead of what it takes)."""
        revocations = self.revocations
        msgs = clients.take(self.consumer, max_records, timeout)
        if self._callback_error is not None:
            failed, self._callback_error = self._callback_error, None
            self.batch = msgs  # rewound to by the roll-back
            if isinstance(failed, (KafkaException, KafkaUnavailable)):
                raise failed
            raise KafkaException(KafkaError(KafkaError._FAIL, f"a rebalance callback failed: {failed}")) from failed
        if self.revocations != revocations:
            # Partitions were revoked while it read: records handed out before that are of partitions this
            # member may no longer own (their next owner reads them from the committed offset too), and
            # which of them came before cannot be told from those of the new assignment. So none is taken,
            # and the new assignment is read from its committed offsets.
            if msgs:
                log.info("%s: %d records read across a rebalance are left to be read again", self.role, len(msgs))
                self._rewind()
            return []
        good = []
        for msg in msgs:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: %s", self.role, error.str())
                continue
            good.append(msg)
        return good

    def taking(self, msgs: list[Message]) -> None:
        """`msgs` are the inputs of the next transaction: a failed step is retried from them."""
        if self._one_by_one and msgs:
            self._one_by_one -= 1
        self.batch = msgs

    def begin(self) -> None:
        if not self.in_transaction:
            if self._producer is not None and self._producer_health.interrupted:
                # It lived through an outage: its cached coordinators may be stale, and librdkafka can
                # then hang in send_offsets_to_transaction. A new one finds them afresh.
                self.renew_producer()
            self.metrics.clear()
            self.producer.begin_transaction()
            self.in_transaction = True

    def commit(self, not_taken: Mapping[tuple[str, int], int] | None = None) -> None:
        """Commit what was produced since `begin` together with the consumer's positions; `not_taken` gives,
        for the partitions it names, the offset of the first record read ahead but not taken yet: that
        offset is committed instead, so the record is read again should this member go."""
        if not self.in_transaction:
            return
        assignment = self.consumer.assignment() if self.subscribed else []  # out of the group: nothing read
        positions = [p for p in self.consumer.position(assignment) if p.offset >= 0] if assignment else []
        if not_taken:
            for p in positions:
                p.offset = min(p.offset, not_taken.get((p.topic, p.partition), p.offset))
        self._commit_with(positions)
        self.metrics.apply()
        self.in_transaction = False
        self.batch = []

    def _commit_with(self, positions: list[TopicPartition]) -> None:
        """Send `positions` (if any) to the open transaction and commit it, timed for the metric."""
        began = time.perf_counter()
        if positions:
            self._send_offsets(positions)
        self._call(lambda p: p.commit_transaction(CALL_TIMEOUT))
        metrics.TRANSACTION_SECONDS.labels(self.role).observe(time.perf_counter() - began)

    def _call(self, call: Callable[[Producer], T]) -> T:
        producer = self.producer
        return self._deadline.run(lambda: call(producer), CALL_TIMEOUT)

    def _send_offsets(self, positions: list[TopicPartition]) -> None:
        metadata = self.consumer.consumer_group_metadata()
        producer = self.producer
        self._deadline.run(lambda: producer.send_offsets_to_transaction(positions, metadata, OFFSETS_TIMEOUT),
                           OFFSETS_TIMEOUT)

    def abort(self) -> None:
        """Abort the open transaction and rewind the consumer to its last committed offsets."""
        if self.in_transaction:
            try:
                self._call(lambda p: p.abort_transaction(CALL_TIMEOUT))
            finally:
                self.in_transaction = False
        self.batch = []
        self._rewind()

    def _rewind(self) -> None:
        """Seek each assigned partition back to its committed offset (its start if none)."""
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
        self._commit_with([past])
        metrics.DEAD_LETTERS.labels(self.role).inc()
        self.in_transaction = False
        self.batch = []
        self.consumer.seek(past)

    def run_until(self, stop: threading.Event, step: Callable[[], object],
                  recover: Callable[[bool], None] | None = None) -> None:
        """Call `step` until `stop` is set. A failed step is rolled back — by `recover(abortable)` when
        given, which must call `abort` (it also rewinds) and undo in-memory state, else by `abort` —
        and the loop goes on; no step runs until the roll-back has succeeded, so no input is passed
        over. No Kafka error ends the loop: a producer that cannot go on is replaced."""
        backoff = Backoff()
        roll_back: bool | None = None  # None: nothing to roll back; else whether to abort
        renew = wedged = False
        to_skip: tuple[Message, str] | None = None
        while not stop.is_set():
            rolling = False
            try:
                if roll_back is not None:
                    rolling = True
                    if renew:
                        self.renew_producer(wedged)
                        renew, wedged, roll_back = False, False, False  # the new producer's init aborts what was open
                    self._roll_back(recover, roll_back)
                    roll_back = None
                    rolling = False
                if to_skip is not None:
                    self.skip(*to_skip)
                    to_skip = None
                if self._producer is not None:
                    self._producer.poll(0)  # serve its callbacks (errors, statistics)
                step()
                backoff.reset()
                self.outage.ok()
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
                error = exc.args[0]
                wedged = wedged or isinstance(exc, ProducerWedged)
                renew = renew or rolling or wedged or needs_new_producer(error)
                self.outage.failed(f"{error.str() if isinstance(error, KafkaError) else error}; rolled back"
                                   f"{' with a new producer' if renew else ''}")
                # Inputs polled but not committed (the step failed before or inside its transaction) are
                # rewound to, never passed over.
                roll_back = bool(roll_back) or abortable(exc) or self.in_transaction or bool(self.batch)
                backoff.wait(stop)
            except KafkaUnavailable as exc:  # an admin request (a partition count) found no cluster
                self.outage.failed(str(exc))
                roll_back = bool(roll_back) or self.in_transaction or bool(self.batch)
                backoff.wait(stop)

    def _roll_back(self, recover: Callable[[bool], None] | None, abort: bool) -> None:
        """Abort (when `abort`) and rewind to the committed offsets; `recover` also undoes in-memory state."""
        if recover is not None:
            recover(abort)
        else:
            self.abort()

    def close(self) -> None:
        self._closing = True  # the partitions close() revokes need no callbacks: this member is going
        if self._producer is not None and self.in_transaction:
            try:
                self._deadline.run(lambda: self._producer.abort_transaction(5) if self._producer else None, 5)
            except KafkaException:
                pass
        try:
            self.consumer.close()
        except KafkaException as exc:  # the broker is away: the group notices by the session timeout
            log.info("%s: leaving the group: %s", self.role, exc.args[0])
        if self._producer is not None:
            self._producer.flush(5)


# Errors after which a transactional producer cannot be used again.
_PRODUCER_GONE = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
                            KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, KafkaError.UNKNOWN_PRODUCER_ID,
                            KafkaError.INVALID_PRODUCER_ID_MAPPING, KafkaError.INVALID_TXN_STATE, KafkaError._STATE})


def needs_new_producer(error: object) -> bool:
    """True when the producer cannot go on: fenced, or a fatal error (librdkafka's idempotence guard
    after a broker lost its state, for one)."""
    if not isinstance(error, KafkaError):
        return False
    return bool(error.fatal()) or error.code() in _PRODUCER_GONE


def abortable(exc: KafkaException) -> bool:
    error = exc.args[0]
    return isinstance(error, KafkaError) and bool(error.txn_requires_abort())
