"""The floor under each step on the event's path: one Kafka transaction, on a broker with nothing else to do.

An event reaches a task through three transactions in a row — the router's, the scheduler's and the
worker's — and a `read_committed` reader sees a step's records only once its transaction has committed.
This measures what one such commit costs by itself, on the lab's broker with no aiflow service running:

- *aiflow's loop*: a `TransactionalLoop` (the class the router, the scheduler, the projector and the worker
  use) reads the tasks topic of a fresh prefix as a group member; a plain producer writes one record at a
  time to it; once the loop has read it, the loop begins a transaction, produces one record of 200 bytes to
  the inbox and commits (the consumer's positions sent to the transaction, then the commit). Timed: begin
  to the commit's return.
- *librdkafka alone*: the same with a bare transactional producer and consumer (the same settings as
  aiflow's clients), `send_offsets_to_transaction` and `commit_transaction` timed apart. librdkafka sends
  AddOffsetsToTxn, then TxnOffsetCommit to the group coordinator; it registers the record's partition
  (AddPartitionsToTxn) and sends the record on the connection that carries the TxnOffsetCommit, so the
  record waits for it; the commit is EndTxn once the record is acknowledged. About four round trips, one
  after the other (transactions v2, KIP-890, would drop two of them; librdkafka does not speak it).

- *three at once*: three such loops, threads of one process as the router, the scheduler and the
  projector are, each on topics of its own, begin, produce and commit at the same moment (a barrier):
  whether commits that reach the broker together slow each other.

There is no target: the figure is the floor under `decide`, `command` and `held` of event_latency,
each of which holds one commit, as measured here on an idle broker, not under load.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid

from confluent_kafka import Consumer, Message, Producer
from lab import Lab, Result, percentile

from aiflow.config import Config
from aiflow.kafka import clients, topics
from aiflow.kafka.transactions import TransactionalLoop

VALUE = b"v" * 200
PAUSE = 0.02  # seconds between two transactions: each starts on a broker done with the one before
TOGETHER = 3  # loops that commit at once, in measure_together


def transaction(lab: Lab, quick: bool) -> Result:
    n = 100 if quick else 400
    loop_ms, offsets, commits = measure(lab.config(), lab.config(), n)
    together = measure_together([lab.config() for _ in range(TOGETHER)], n // 2)
    bare = [o + c for o, c in zip(offsets, commits, strict=True)]
    p50 = statistics.median(loop_ms)
    extra = {"bare_p50_ms": statistics.median(bare), "bare_p95_ms": percentile(bare, 95),
             "bare_send_offsets_p50_ms": statistics.median(offsets), "bare_commit_p50_ms": statistics.median(commits),
             "three_in_a_row_p50_ms": 3 * p50, "three_at_once_p50_ms": statistics.median(together),
             "three_at_once_p95_ms": percentile(together, 95)}
    detail = [f"aiflow's loop: begin to committed {p50:.1f} ms p50; three in a row (router, scheduler, worker) "
              f"{3 * p50:.1f} ms, against event -> callable's target of 15 ms",
              f"librdkafka alone: {extra['bare_p50_ms']:.1f} ms p50: send_offsets_to_transaction "
              f"{extra['bare_send_offsets_p50_ms']:.1f} ms, commit_transaction {extra['bare_commit_p50_ms']:.1f} ms",
              f"three loops of one process committing at once (as the router, the scheduler and the projector can): "
              f"each commit {extra['three_at_once_p50_ms']:.1f} ms p50, {extra['three_at_once_p95_ms']:.1f} p95"]
    return Result("one Kafka transaction, idle broker (the floor of a step)", "ms", p50, percentile(loop_ms, 95),
                  percentile(loop_ms, 99), n, "none (a floor)", None, __doc__ or "", extra, detail)


def _next(consumer: Consumer, feeder: Producer, topic: str, i: int) -> Message:
    """Write one record and wait until `consumer` has read it (untimed)."""
    feeder.produce(topic, VALUE, key=str(i).encode())
    feeder.flush(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            return msg
    raise TimeoutError("the record written for the transaction did not arrive")


def measure(looped: Config, bare: Config, n: int) -> tuple[list[float], list[float], list[float]]:
    """n transactions of each kind, taken in turn (so both meet the broker in the same state), each on the
    topics of its own prefix: ms from begin to the commit's return of a TransactionalLoop's; ms of
    send_offsets_to_transaction (with the begin and the produce before it) and of commit_transaction of a
    bare one's. The first 10 of each are not
    counted: they find coordinators and connections."""
    loop = TransactionalLoop(looped, "bench-txn", topics.name(looped, topics.TASKS),
                             f"{looped.topic_prefix}-bench-txn")
    producer = clients.producer(bare, role="bench-txn-bare", transactional_id=f"bench-{uuid.uuid4().hex[:8]}",
                                linger_ms=1)
    consumer = clients.consumer(bare, role="bench-txn-bare", group_id=f"{bare.topic_prefix}-bench-bare")
    feeder = clients.producer(looped, role="bench-feeder")
    loop_ms: list[float] = []
    offsets: list[float] = []
    commits: list[float] = []
    try:
        loop.begin()  # the producer's id before the clock
        loop.commit()
        producer.init_transactions(30)
        consumer.subscribe([topics.name(bare, topics.TASKS)])
        for i in range(n + 10):
            _next(loop.consumer, feeder, topics.name(looped, topics.TASKS), i)
            began = time.perf_counter()
            loop.begin()
            loop.producer.produce(topics.name(looped, topics.INBOX), VALUE, key=str(i).encode())
            loop.commit()
            done = time.perf_counter()
            time.sleep(PAUSE)
            _next(consumer, feeder, topics.name(bare, topics.TASKS), i)
            bare_began = time.perf_counter()  # as the loop's: from begin, so with the begin and the produce
            producer.begin_transaction()
            producer.produce(topics.name(bare, topics.INBOX), VALUE, key=str(i).encode())
            producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                 consumer.consumer_group_metadata(), 10)
            sent = time.perf_counter()
            producer.commit_transaction(30)
            bare_done = time.perf_counter()
            time.sleep(PAUSE)
            if i >= 10:
                loop_ms.append((done - began) * 1000)
                offsets.append((sent - bare_began) * 1000)
                commits.append((bare_done - sent) * 1000)
    finally:
        feeder.flush(10)
        producer.flush(10)
        consumer.close()
        loop.close()
    return loop_ms, offsets, commits


def measure_together(configs: list[Config], n: int) -> list[float]:
    """n rounds in which one TransactionalLoop per config (threads of this process, each on the topics of
    its own prefix) has read a record of its own and all begin, produce and commit at the same moment (a
    barrier): ms from begin to the commit's return, of every loop and round. The first 5 rounds are not
    counted."""
    loops = [TransactionalLoop(c, f"bench-txn-{i}", topics.name(c, topics.TASKS), f"{c.topic_prefix}-bench-txn")
             for i, c in enumerate(configs)]
    feeder = clients.producer(configs[0], role="bench-feeder")
    barrier = threading.Barrier(len(loops))
    times: list[float] = []
    errors: list[BaseException] = []

    def commit(loop: TransactionalLoop, inbox: str, i: int) -> None:
        try:
            barrier.wait(timeout=30)
            began = time.perf_counter()
            loop.begin()
            loop.producer.produce(inbox, VALUE, key=str(i).encode())
            loop.commit()
            if i >= 5:
                times.append((time.perf_counter() - began) * 1000)
        except BaseException as exc:  # raised again in the benchmark's thread
            errors.append(exc)

    try:
        for loop in loops:
            loop.begin()  # the producer's id before the clock
            loop.commit()
        for i in range(n + 5):
            for loop, config in zip(loops, configs, strict=True):
                _next(loop.consumer, feeder, topics.name(config, topics.TASKS), i)
            threads = [threading.Thread(target=commit, args=(loop, topics.name(config, topics.INBOX), i))
                       for loop, config in zip(loops, configs, strict=True)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
            time.sleep(PAUSE)
    finally:
        feeder.flush(10)
        for loop in loops:
            loop.close()
    return times
