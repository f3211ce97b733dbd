"""The decisions of the transactional loop and the bridge that need no broker: which Kafka errors
replace the producer, how the back-off grows, and that a decoder's surprise dead-letters one record."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, KafkaError, KafkaException, Message, TopicPartition

from aiflow.connectors.kafka_topic import TopicBridge
from aiflow.connectors.mapping import Mapping
from aiflow.kafka.transactions import Backoff, TransactionalLoop, needs_new_producer
from aiflow.protocol.deadletter import REASON
from aiflow.protocol.messages import TaskCommand


@pytest.mark.parametrize("code", [KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
                                  KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, KafkaError.UNKNOWN_PRODUCER_ID,
                                  KafkaError.INVALID_TXN_STATE])
def test_a_fenced_or_out_of_sequence_producer_is_replaced(code: int) -> None:
    assert needs_new_producer(KafkaError(code))


def test_any_fatal_error_replaces_the_producer() -> None:
    assert needs_new_producer(KafkaError(KafkaError._TIMED_OUT, fatal=True))


@pytest.mark.parametrize("code", [KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                  KafkaError.NOT_COORDINATOR, KafkaError._ALL_BROKERS_DOWN,
                                  KafkaError.CONCURRENT_TRANSACTIONS])
def test_transient_errors_keep_the_producer(code: int) -> None:
    assert not needs_new_producer(KafkaError(code, retriable=True))
    assert not needs_new_producer(RuntimeError("not a Kafka error"))


def test_the_back_off_doubles_from_a_tenth_of_a_second_to_five_and_starts_over_after_success() -> None:
    stopped = threading.Event()
    stopped.set()  # wait() returns at once: only the delays are checked
    backoff = Backoff()
    delays = []
    for _ in range(8):
        backoff.wait(stopped)
        delays.append(backoff.delay)
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff.reset()
    backoff.wait(stopped)
    assert backoff.delay == 0.1


class _SurprisingMapping(Mapping):
    def decode(self, data: bytes | None) -> Any:
        raise IndexError("a decoder bug")


def test_a_bridge_record_whose_decoder_fails_unexpectedly_is_dead_lettered_not_fatal() -> None:
    bridge = TopicBridge.__new__(TopicBridge)  # no consumer: to_records needs none
    bridge.name, bridge.bridged, bridge.dead = "orders", 0, 0
    bridge.mapping = _SurprisingMapping(key="orders.{status}")
    msg = Message(topic="orders", partition=0, offset=3, key=b"k", value=b"{}", headers=None,
                  timestamp=(TIMESTAMP_LOG_APPEND_TIME, 1_764_158_400_000))
    [record] = bridge.to_records(msg)
    reason = dict(record.headers or [])[REASON]
    assert reason.startswith(b"cannot map the record: IndexError: a decoder bug")
    assert (bridge.dead, bridge.bridged) == (1, 0)


class _Process:
    def poll(self) -> int:
        return 0


class _Loop:
    """Begin and commit of a transaction, the first commit failing as when the broker went away."""

    def __init__(self) -> None:
        self.commits = 0
        self.in_transaction = False

    def begin(self) -> None:
        self.in_transaction = True

    def commit(self, not_taken: object = None) -> None:
        self.commits += 1
        if self.commits == 1:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        self.in_transaction = False


def test_the_worker_forgets_a_finished_try_only_once_its_report_has_committed(tmp_path: Path) -> None:
    from aiflow.config import Config
    from aiflow.worker.logship import LogShipper
    from aiflow.worker.service import ReadAhead, Running, Worker

    worker = Worker.__new__(Worker)  # no Kafka: the loop is the stand-in above
    command = TaskCommand("ns", "wf", "e1", "train", 1, "file:///s.zip", "a" * 64, "wf.py")
    worker.loop = _Loop()  # type: ignore[assignment]
    worker.read_ahead = ReadAhead()
    worker.not_started = {}
    worker.running = {("e1", "train", 1): Running(command, _Process(), tmp_path / "1.log", 0.0)}  # type: ignore[arg-type]
    worker.logs = LogShipper(Config.load(home=tmp_path, environ={}))  # told of nothing: it starts no thread
    reports: list[tuple[str, str | None]] = []
    worker._kill_group = lambda run: None  # type: ignore[method-assign]
    worker._report = (  # type: ignore[method-assign]
        lambda cmd, status, message="", pid=None: reports.append((cmd.task, status)))

    worker._to_launch, worker._held = [], {}

    def step() -> None:  # the part of Worker.step about ended tries
        worker._reap()
        worker._commit_step()

    with pytest.raises(KafkaException):
        step()
    assert ("e1", "train", 1) in worker.running  # the report did not commit: the try is still known
    step()
    assert worker.running == {} and reports == [("train", "SUCCESS"), ("train", "SUCCESS")]


MARKING = """
import os
with open("module_runs.txt", "a") as f:  # the workflow file's first lines: anything of the task running
    f.write(f"{os.getpid()}\\n")
from aiflow import Workflow, PythonOperator
with Workflow(name="marking"):
    PythonOperator(name="t", python_callable=lambda: None)
"""


class _Logs:
    def follow(self, command: object, path: Path) -> None:
        pass

    def finish(self, key: object) -> None:
        pass


def test_a_try_forked_ahead_of_a_commit_that_fails_is_killed_before_it_runs_anything(tmp_path: Path) -> None:
    """The worker forks a taken try during its step's commit, held; a failed commit kills it unrun, and
    the command taken again on the next step starts once."""
    import os
    import time

    from aiflow.config import Config
    from aiflow.events.context import TaskContext
    from aiflow.worker.service import ReadAhead, Worker, working_dir
    from aiflow.worker.zygote import ForkedTask, ForkServer
    from tests.conftest import process_alive

    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "flow.py").write_text(MARKING)
    runs = folder / "module_runs.txt"
    command = TaskCommand("default", "marking", "e1", "t", 1, "file:///s.zip", "a" * 64, "flow.py")
    env = {**os.environ, **TaskContext("default", "marking", "e1", "t", 1).to_env()}
    forked: list[int] = []

    class Forks(ForkServer):
        def result(self, request_id: int, timeout: float = 10.0) -> ForkedTask:
            task = super().result(request_id, timeout)
            forked.append(task.pid)
            return task

    worker = Worker.__new__(Worker)  # no Kafka: the loop is the stand-in above; a real fork server
    worker.loop = _Loop()  # type: ignore[assignment]
    worker.read_ahead = ReadAhead()
    worker.config = Config.load(home=tmp_path, environ={})
    worker.forks = Forks(env)
    worker.logs = _Logs()  # type: ignore[assignment]
    worker.name = "w"
    worker.running, worker.not_started, worker._held = {}, {}, {}
    worker._reaped, worker._reported_not_started = [], []
    worker._prepare = lambda cmd: (  # type: ignore[method-assign]
        [str(folder / "flow.py"), "marking", "t"], env, folder, tmp_path / "1.log")
    try:
        worker._fork_ahead(command)
        assert worker._held == {}  # the execution's first try here: forked after the commit, its snapshot fetched
        working_dir(tmp_path, "marking", "e1").mkdir(parents=True)  # as the first try leaves it
        for _attempt in range(2):  # the step that takes the command; its commit fails the first time
            worker.loop.begin()
            worker._to_launch = [command]
            worker._fork_ahead(command)
            assert list(worker._held) == [command.try_key]
            if not forked:
                with pytest.raises(KafkaException):
                    worker._commit_step()
                [first] = forked
                deadline = time.monotonic() + 10
                while process_alive(first):  # killed now, not at the end of its hold
                    assert time.monotonic() < deadline, "the held try of the failed commit still lives"
                    time.sleep(0.05)
                assert worker.running == {} and worker._held == {} and not runs.exists()
            else:
                worker._commit_step()
        run = worker.running[command.try_key]
        deadline = time.monotonic() + 30
        while run.process.poll() is None:
            assert time.monotonic() < deadline, "the try did not end"
            time.sleep(0.05)
        assert run.process.poll() == 0
        assert runs.read_text().split() == [str(run.process.pid)]  # the file ran once, in the second try
        assert worker.forks.exits == {}  # the first one's end was not reported as a try's
    finally:
        worker.forks.close()


class _RebalancingConsumer:
    """Hands out one record from poll, then revokes its partitions inside consume (as a rebalance can)
    and hands out one more: which of them came before the revocation cannot be told from the list."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.rebalance = True
        self.seeks: list[tuple[str, int, int]] = []
        self.next_offset = 3

    def _record(self) -> Message:
        self.next_offset += 1
        return Message(topic="inbox", partition=0, offset=self.next_offset - 1, value=b"x")

    def poll(self, timeout: float) -> Message:
        return self._record()

    def consume(self, count: int, timeout: float) -> list[Message]:
        if self.rebalance:
            self.loop._revoked(self, [TopicPartition("inbox", 0)])
        return [self._record()]

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("inbox", 0)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 3) for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def test_records_read_across_a_revocation_are_not_taken_and_the_new_assignment_is_read_from_its_committed_offsets(
        ) -> None:
    """A record handed out before its partition was revoked is also read by the partition's next owner (from
    the committed offset): taken here too, it would be acted on twice."""
    loop = TransactionalLoop.__new__(TransactionalLoop)  # no Kafka: only what read does
    loop.role, loop.revocations, loop._callback_error, loop._on_revoke, loop._closing = "test", 0, None, None, False
    consumer = _RebalancingConsumer(loop)
    loop.consumer = consumer  # type: ignore[assignment]
    assert loop.read(10, 0.1) == [] and consumer.seeks == [("inbox", 0, 3)]
    consumer.rebalance = False  # without a rebalance, what is read is handed out
    assert [m.offset() for m in loop.read(10, 0.1)] == [5, 6] and consumer.seeks == [("inbox", 0, 3)]
