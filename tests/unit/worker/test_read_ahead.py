"""A full worker reads commands ahead instead of pausing at once: what it may read, what it takes when a slot
frees, and which offsets it commits. No broker: the loop is a stand-in that hands out records."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message, TopicPartition

from aiflow.protocol.messages import TaskCommand
from aiflow.worker import service
from aiflow.worker.service import ReadAhead, Worker, _Unverified


def _message(topic: str, partition: int, offset: int, task: str = "t") -> Message:
    record = TaskCommand("default", "wf", "e1", task, 1, "file:///s.zip", "a" * 64, "wf.py").to_record()
    return Message(topic=topic, partition=partition, offset=offset, key=record.key_bytes(), value=record.value,
                   headers=list(record.headers) or None)


def test_commands_come_out_in_order_per_partition_and_the_first_one_left_is_what_may_be_committed() -> None:
    ahead = ReadAhead()
    ahead.add([_message("tasks", 0, 10), _message("tasks", 0, 11), _message("tasks", 1, 4),
               _message("tasks", 0, 12), _message("other", 0, 7)])
    assert len(ahead) == 5 and ahead.not_taken() == {("tasks", 0): 10, ("tasks", 1): 4, ("other", 0): 7}
    taken = ahead.take(2)  # one partition after another, each from its oldest
    assert [(m.topic(), m.partition(), m.offset()) for m in taken] == [("tasks", 0, 10), ("tasks", 1, 4)]
    assert ahead.not_taken() == {("tasks", 0): 11, ("other", 0): 7}
    ahead.forget([TopicPartition("other", 0)])  # revoked: the next owner reads it from the committed offset
    assert [m.offset() for m in ahead.take(10)] == [11, 12] and len(ahead) == 0 and ahead.not_taken() == {}
    ahead.add([_message("tasks", 2, 1)])
    ahead.forget()
    assert len(ahead) == 0


class _Consumer:
    """As librdkafka's: a paused partition stays paused until resumed, through a revocation too."""

    def __init__(self, count: int) -> None:
        self.records = deque(_message("tasks", 0, offset, f"t{offset}") for offset in range(count))
        self.paused = False

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("tasks", 0)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 0) for tp in partitions]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused = True

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused = False


class _Loop:
    """What the worker asks of its TransactionalLoop, with a partition of `count` commands behind it."""

    subscribed = True
    one_by_one = False

    def __init__(self, count: int) -> None:
        self.consumer = _Consumer(count)
        self.read_count = 0
        self.revocations = 0
        self.on_read: Callable[[], None] | None = None  # what happens inside the next read (a rebalance)
        self.batch: list[Message] = []
        self.in_transaction = False
        self.committed: list[dict[tuple[str, int], int] | None] = []
        self.aborted = 0

    def read(self, max_records: int, timeout: float) -> list[Message]:
        if self.on_read is not None:
            self.on_read()
            self.on_read = None
            return []  # TransactionalLoop.read takes nothing read across a revocation
        if self.consumer.paused:
            return []
        records = self.consumer.records
        taken = [records.popleft() for _ in range(min(max_records, len(records)))]
        self.read_count += len(taken)
        return taken

    def taking(self, msgs: list[Message]) -> None:
        self.batch = msgs

    def begin(self) -> None:
        self.in_transaction = True

    def commit(self, not_taken: dict[tuple[str, int], int] | None = None) -> None:
        self.committed.append(not_taken)
        self.in_transaction = False

    def abort(self) -> None:
        self.aborted += 1


def _worker(count: int, slots: int) -> tuple[Worker, _Loop]:
    worker = Worker.__new__(Worker)  # no Kafka, no fork server: only the taking of commands
    loop = _Loop(count)
    worker.loop = loop  # type: ignore[assignment]
    worker.read_ahead = ReadAhead()
    worker.slots = slots
    worker.running = {("e0", f"busy{i}", 1): None for i in range(slots)}  # type: ignore[misc]
    worker._reaped, worker._to_launch, worker._held = [], [], {}
    worker.paused = False
    worker._full_since = None
    worker.leave_when_full_after = 1e9
    worker.queue_of_topic = {"tasks": "default"}
    worker.stopped_before_start = {}
    worker.forks = None
    worker.unverified = _Unverified()
    reports: list[tuple[str, Any]] = []
    worker._report = lambda command, status, message="", pid=None: reports.append(  # type: ignore[method-assign]
        (command.task, status))
    worker._announced = lambda command: True  # type: ignore[method-assign]
    worker._still_waiting = lambda msg, command: True  # type: ignore[method-assign]
    return worker, loop


def test_a_full_worker_reads_ahead_then_pauses_and_a_freed_slot_takes_the_oldest_command_without_a_fetch() -> None:
    worker, loop = _worker(service.READ_AHEAD + 100, slots=2)
    for _ in range(5):
        worker._take_commands()
    assert len(worker.read_ahead) == service.READ_AHEAD and loop.read_count == service.READ_AHEAD
    assert loop.consumer.paused and worker.paused and worker._to_launch == []

    worker.running.popitem()  # a slot frees: the oldest command read ahead is taken, nothing is read
    worker._take_commands()
    assert [c.task for c in worker._to_launch] == ["t0"] and [m.offset() for m in loop.batch] == [0]
    assert loop.read_count == service.READ_AHEAD and loop.consumer.paused  # still plenty read ahead
    worker._commit()  # the offset committed is that of the first command not taken, not the position
    assert loop.committed == [{("tasks", 0): 1}]

    # Taken down to below RESUME_BELOW, the partitions resume while what is left keeps the slots busy.
    worker._to_launch = []
    while len(worker.read_ahead) >= service.RESUME_BELOW:
        worker.read_ahead.take(1)
    worker._take_commands()
    assert not loop.consumer.paused and not worker.paused
    assert len(worker._to_launch) == 1 and loop.read_count == service.READ_AHEAD


def test_a_worker_with_free_slots_takes_what_was_read_ahead_first_then_reads_only_what_it_can_run() -> None:
    worker, loop = _worker(10, slots=1)
    worker._take_commands()  # full: reads ahead what there is
    assert len(worker.read_ahead) == 10 and not loop.consumer.paused
    worker.running.clear()
    worker.slots = 4
    worker._take_commands()
    assert [c.task for c in worker._to_launch] == ["t0", "t1", "t2", "t3"] and len(worker.read_ahead) == 6
    worker._commit()
    assert loop.committed == [{("tasks", 0): 4}]
    worker._roll_back(True)  # a failed step rewinds to the committed offsets: what was read ahead comes again
    assert len(worker.read_ahead) == 0 and loop.aborted == 1


def test_while_inputs_are_taken_one_by_one_nothing_is_read_ahead() -> None:
    worker, loop = _worker(10, slots=1)
    loop.one_by_one = True
    worker._take_commands()
    assert len(worker.read_ahead) == 0 and loop.consumer.paused and loop.read_count == 0
    worker.running.clear()
    worker.slots = 3
    worker._take_commands()
    assert [c.task for c in worker._to_launch] == ["t0"] and loop.read_count == 1


def test_a_partition_given_back_by_a_rebalance_is_resumed_unless_the_worker_is_full_and_has_read_ahead_all_it_may(
        ) -> None:
    worker, loop = _worker(service.READ_AHEAD + 100, slots=1)
    for _ in range(3):
        worker._take_commands()
    assert loop.consumer.paused and worker.paused
    # A rebalance: revoked (what was read ahead forgotten), then the partition is given back. librdkafka
    # keeps it paused; were it not resumed here, a worker with a free slot would never fetch it again.
    worker.read_ahead.forget()
    worker._assigned([TopicPartition("tasks", 0)])
    assert not worker.paused and not loop.consumer.paused
    worker.running.clear()
    worker._take_commands()
    assert [c.task for c in worker._to_launch] == ["t500"]  # it fetches again

    # Full and with all it may read ahead, it keeps a partition given back paused.
    worker, loop = _worker(service.READ_AHEAD + 100, slots=1)
    for _ in range(3):
        worker._take_commands()
    worker._assigned([TopicPartition("tasks", 0)])
    assert worker.paused and loop.consumer.paused


def test_commands_read_ahead_are_not_taken_when_the_partitions_are_revoked_while_more_are_read() -> None:
    worker, loop = _worker(2, slots=1)
    worker._take_commands()  # full: reads ahead the two commands
    assert len(worker.read_ahead) == 2
    worker.running.clear()
    worker.slots = 4  # takes the two, then reads for two more, and meanwhile the group rebalances

    def rebalance() -> None:
        loop.revocations += 1
        worker.read_ahead.forget()

    loop.on_read = rebalance
    worker._take_commands()
    # The next owner of the partition reads them from the committed offset: run here too, they would run twice.
    assert worker._to_launch == [] and loop.batch == [] and not loop.in_transaction
