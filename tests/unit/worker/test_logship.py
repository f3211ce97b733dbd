"""The log shipper without a broker: a fake producer stands in for librdkafka's."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiflow.config import Config
from aiflow.protocol.messages import LogChunk, TaskCommand
from aiflow.protocol.records import MAX_LOG_CHUNK_BYTES, log_partition, try_key
from aiflow.worker.logship import LogShipper

COMMAND = TaskCommand("default", "wf", "e1", "talk", 1, "file:///x.zip", "0" * 64, "wf.py")


class FakeMessage:
    def __init__(self, partition: int) -> None:
        self._partition = partition

    def partition(self) -> int:
        return self._partition


class FakeError:
    def str(self) -> str:
        return "broker away"

    def fatal(self) -> bool:
        return False


class FakeProducer:
    """Keeps what is produced and delivers it on poll; the first `failures` polls with something to deliver
    fail all of it (with idempotence, librdkafka fails what follows a failed record too: order is kept)."""

    def __init__(self, failures: int = 0, full: bool = False) -> None:
        self.failures = failures
        self.full = full
        self.pending: list[tuple[Callable[[Any, Any], None], int]] = []
        self.delivered: list[tuple[bytes, int]] = []  # (value, partition)

    def produce(self, topic: str, key: bytes, value: bytes, partition: int,
                on_delivery: Callable[[Any, Any], None]) -> None:
        if self.full:
            raise BufferError("queue full")
        self.pending.append((on_delivery, partition))
        self.delivered.append((value, partition))

    def poll(self, _timeout: float) -> int:
        pending, self.pending = self.pending, []
        failing = bool(pending) and self.failures > 0
        if failing:
            self.failures -= 1
            del self.delivered[len(self.delivered) - len(pending):]  # not stored
        for callback, partition in pending:
            callback(FakeError() if failing else None, FakeMessage(partition))
        return len(pending)

    def flush(self, _timeout: float) -> int:
        return self.poll(0)

    def purge(self) -> None:
        pass


def shipper_with(producer: FakeProducer, tmp_path: Path) -> LogShipper:
    shipper = LogShipper(Config.load(home=tmp_path, environ={}), "w1")
    shipper._producer = lambda: producer  # type: ignore[method-assign]
    shipper._partition_count = lambda: 3  # type: ignore[method-assign]
    return shipper


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def chunks(producer: FakeProducer) -> list[LogChunk]:
    return [LogChunk.decode(value) for value, _ in producer.delivered]


def output(found: list[LogChunk]) -> bytes:
    """The file as a reader puts it together: each byte once, in order."""
    text, position = b"", 0
    for chunk in found:
        if chunk.end_position > position:
            text += chunk.data[max(0, position - chunk.position):]
            position = chunk.end_position
    return text


def test_output_goes_in_chunks_cut_at_line_ends_and_ends_with_an_end_chunk(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    lines = b"".join(b"line %d\n" % i for i in range(30_000))  # about 260 KiB
    log.write_bytes(lines[:100_000])
    producer = FakeProducer()
    shipper = shipper_with(producer, tmp_path)
    shipper.follow(COMMAND, log)
    wait_until(lambda: sum(len(c.data) for c in chunks(producer)) == 100_000)
    with log.open("ab") as f:
        f.write(lines[100_000:])
    shipper.finish(COMMAND.try_key)
    wait_until(lambda: shipper.pending() == 0)
    shipper.stop(grace=1)

    found = chunks(producer)
    assert output(found) == lines
    assert [c.position for c in found] == [0] + [c.end_position for c in found[:-1]]  # contiguous, in order
    assert all(len(c.data) <= MAX_LOG_CHUNK_BYTES for c in found)
    full = [c for c in found if len(c.data) > MAX_LOG_CHUNK_BYTES - 100]
    assert full and all(c.data.endswith(b"\n") for c in full)
    assert [c.end for c in found] == [False] * (len(found) - 1) + [True]
    assert {p for _, p in producer.delivered} == {log_partition(try_key("e1", "talk", 1), 3)}
    assert {(c.execution_id, c.task, c.try_number, c.worker) for c in found} == {("e1", "talk", 1, "w1")}


def test_a_failed_delivery_is_shipped_again_from_what_was_acknowledged(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(50_000)))
    producer = FakeProducer(failures=2)
    shipper = shipper_with(producer, tmp_path)
    shipper.follow(COMMAND, log)
    shipper.finish(COMMAND.try_key)
    wait_until(lambda: shipper.pending() == 0)
    shipper.stop(grace=1)
    assert output(chunks(producer)) == log.read_bytes()
    assert chunks(producer)[-1].end


def test_the_worker_never_waits_for_the_shipper_even_when_kafka_takes_nothing(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    log.write_bytes(b"x\n" * 100_000)
    shipper = shipper_with(FakeProducer(full=True), tmp_path)
    started = time.monotonic()
    shipper.follow(COMMAND, log)
    time.sleep(0.5)
    shipper.finish(COMMAND.try_key)
    assert time.monotonic() - started < 0.6
    shipper.stop(grace=0.5)
    assert time.monotonic() - started < 3 and shipper.pending() == 1  # the file still has it all
