"""The dead-letter topic: where a record that cannot be decoded or applied goes, with its reason."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException, Message, Producer

from aiflow.config import Config
from aiflow.kafka import clients, topics

REASON = "aiflow.dlq.reason"
SOURCE = "aiflow.dlq.source"
REPORTER = "aiflow.dlq.reporter"
TIME = "aiflow.dlq.time"


def source_of(msg: Message) -> str:
    return f"{msg.topic()}/{msg.partition()}/{msg.offset()}"


def headers_for(msg: Message, reason: str, reporter: str) -> list[tuple[str, str | bytes | None]]:
    """The record's own headers plus why, where from, who found it and when."""
    original = msg.headers() or []
    kept: list[tuple[str, str | bytes | None]] = [(k, v if isinstance(v, bytes) else str(v or "").encode())
            for k, v in (original if isinstance(original, list) else original.items())]
    return [*kept, (REASON, reason.encode()), (SOURCE, source_of(msg).encode()),
            (REPORTER, reporter.encode()), (TIME, str(int(time.time() * 1000)).encode())]


class DeadLetters:
    """Copies bad records to the dead-letter topic as received (key, value, headers) plus why.

    `send` returns once the copy is durable, so the caller may move past the bad record without
    losing it. Every reader that meets a bad record reports it; the `aiflow.dlq.source` header
    (topic/partition/offset) tells copies of one record apart from different records.
    """

    def __init__(self, config: Config, reporter: str, producer: Producer | None = None) -> None:
        self.topic = topics.name(config, topics.DLQ)
        self.reporter = reporter
        self._producer = producer or clients.producer(config, role="dlq")

    def send(self, msg: Message, reason: str) -> None:
        headers = headers_for(msg, reason, self.reporter)
        errors: list[str] = []
        self._producer.produce(self.topic, key=msg.key(), value=msg.value(), headers=headers,
                               on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
        if self._producer.flush(30) != 0 or errors:
            raise KafkaException(f"could not write to {self.topic}: {errors or 'timed out'}")
