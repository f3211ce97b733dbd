"""The decisions of the transactional loop and the bridge that need no broker: which Kafka errors
replace the producer, how the back-off grows, and that a decoder's surprise dead-letters one record."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, KafkaError, KafkaException, Message

from aiflow.connectors.kafka_topic import TopicBridge
from aiflow.connectors.mapping import Mapping
from aiflow.kafka.transactions import Backoff, needs_new_producer
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

    def commit(self) -> None:
        self.commits += 1
        if self.commits == 1:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        self.in_transaction = False


def test_the_worker_forgets_a_finished_try_only_once_its_report_has_committed(tmp_path: Path) -> None:
    from aiflow.config import Config
    from aiflow.worker.logship import LogShipper
    from aiflow.worker.service import Running, Worker

    worker = Worker.__new__(Worker)  # no Kafka: the loop is the stand-in above
    command = TaskCommand("ns", "wf", "e1", "train", 1, "file:///s.zip", "a" * 64, "wf.py")
    worker.loop = _Loop()  # type: ignore[assignment]
    worker.not_started = {}
    worker.running = {("e1", "train", 1): Running(command, _Process(), tmp_path / "1.log", 0.0)}  # type: ignore[arg-type]
    worker.logs = LogShipper(Config.load(home=tmp_path, environ={}))  # told of nothing: it starts no thread
    reports: list[tuple[str, str | None]] = []
    worker._kill_group = lambda run: None  # type: ignore[method-assign]
    worker._report = (  # type: ignore[method-assign]
        lambda cmd, status, message="", pid=None: reports.append((cmd.task, status)))

    worker._to_launch = []

    def step() -> None:  # the part of Worker.step about ended tries
        worker._reap()
        worker._commit_step()

    with pytest.raises(KafkaException):
        step()
    assert ("e1", "train", 1) in worker.running  # the report did not commit: the try is still known
    step()
    assert worker.running == {} and reports == [("train", "SUCCESS"), ("train", "SUCCESS")]
