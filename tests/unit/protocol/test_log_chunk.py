"""The logs topic's record: a try's output chunk round-trips, and readers skip junk without a word to anyone
(the topic has no owner: nothing is dead-lettered)."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from aiflow.protocol import topics
from aiflow.protocol.deadletter import decode_or_dead_letter
from aiflow.protocol.messages import ControlCommand, LogChunk
from aiflow.protocol.records import MAX_LOG_CHUNK_BYTES, MAX_RECORD_BYTES, log_partition, try_key
from tests.unit.protocol.junk import NOW

CHUNK = LogChunk("default", "wf", "e1", "train", 2, 4096, b"epoch 1 loss 0.25\n\xff\xfe not UTF-8\n", worker="w1",
                 create_time=NOW)


def consumed(key: bytes | None, value: bytes | None) -> Message:
    return Message(topic="aiflow.logs", partition=0, offset=3, key=key, value=value,
                   timestamp=(TIMESTAMP_CREATE_TIME, 1_764_158_400_000))


def test_a_chunk_round_trips_keyed_by_its_try_with_its_bytes_as_written() -> None:
    record = CHUNK.to_record()
    assert record.role == topics.LOGS and record.key == "e1/train/2" == try_key("e1", "train", 2)
    assert record.value is not None
    back = LogChunk.from_record(consumed(record.key_bytes(), record.value))
    assert back == CHUNK and back.end_position == 4096 + len(CHUNK.data)
    last = LogChunk("default", "wf", "e1", "train", 2, 5000, end=True, create_time=NOW)
    assert LogChunk.decode(last.encode()) == last


def test_a_try_has_one_partition_that_writer_and_reader_compute_alike() -> None:
    assert {log_partition("e1/train/2", 6) for _ in range(3)} == {log_partition("e1/train/2", 6)}
    assert len({log_partition(f"e{i}/t/1", 6) for i in range(100)}) == 6


def chunk_with(**fields: object) -> bytes:
    record = {**CHUNK.to_avro(), **fields}
    from aiflow.protocol.codec import LOG_CHUNK, default_codec

    return default_codec().encode(LOG_CHUNK, record)


JUNK = {
    "random bytes": (b"e1/train/2", os.urandom(64)),
    "another message kind": (b"e1", ControlCommand("STOP", "e1", create_time=NOW).encode()),
    "a key that is not UTF-8": (b"\xff\xfe", CHUNK.encode()),
    "a key of another try": (b"e1/train/3", CHUNK.encode()),
    "over the record limit": (b"e1/train/2", b"x" * (MAX_RECORD_BYTES + 1)),
    "a negative position": (b"e1/train/2", chunk_with(position=-1)),
    "a chunk over its limit": (b"e1/train/2", chunk_with(data=b"x" * (MAX_LOG_CHUNK_BYTES + 1))),
    "no value": (b"e1/train/2", None),
}


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_a_log_reader_skips_junk_and_writes_nothing(kind: str) -> None:
    key, value = JUNK[kind]
    with pytest.raises(Exception):  # noqa: B017  (DecodeError, or another error of the decoder)
        LogChunk.from_record(consumed(key, value))
    assert decode_or_dead_letter(consumed(key, value), LogChunk.from_record, "log-reader", None) is None


def test_the_logs_topic_has_no_owner() -> None:
    assert topics.LOGS in topics.ALL and topics.OWNERS[topics.LOGS] is None
