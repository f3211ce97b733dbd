"""Producing records: the one produce loop (waiting while the local queue is full) and the one
durable send of a lone record outside any transaction.

A record that can never be produced (over its size limit, a key that is not UTF-8) raises
RecordError *before* it reaches librdkafka, so the caller can dead-letter the input that made it
instead of retrying it forever; everything else librdkafka reports is transient.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace

from confluent_kafka import KafkaError, Message, Producer

from aiflow.config import Config
from aiflow.errors import KafkaUnavailable
from aiflow.kafka import clients, topics
from aiflow.protocol.records import Header, Record, inbox_partition


def produce(producer: Producer, config: Config, record: Record,
            on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
    """Queue the record on the producer (in its open transaction, if any), waiting while its queue is full."""
    record.check_size()
    key = record.key_bytes()
    topic = topics.name(config, record.role)
    if record.role == topics.INBOX and record.partition is None:
        assert isinstance(record.key, str)
        record = replace(record, partition=inbox_partition(record.key, topics.partition_count(config, topics.INBOX)))
    produce_bytes(producer, topic, key, record.value, list(record.headers) if record.headers else None,
                  record.partition, on_delivery)


def produce_bytes(producer: Producer, topic: str, key: bytes | None, value: bytes | None,
                  headers: list[Header] | None = None, partition: int | None = None,
                  on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
    """`produce` of a record already encoded and checked (the event client's batches)."""
    while True:
        try:
            if partition is None:
                producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
            else:
                producer.produce(topic, key=key, value=value, headers=headers, partition=partition,
                                 on_delivery=on_delivery)
            return
        except BufferError:  # the local queue is full: let deliveries drain, then go on
            producer.poll(0.05)


# One producer per process, configuration and role for `send`: a script that calls ops a thousand
# times opens one connection, not a thousand. Keyed by pid too, as a producer must not cross a fork.
_shared: dict[tuple[int, str, str, tuple[tuple[str, str], ...]], Producer] = {}
_shared_lock = threading.Lock()


def shared_producer(config: Config, role: str = "sender") -> Producer:
    """This process's producer for `role` on the configured cluster, made on first use."""
    key = (os.getpid(), role, config.bootstrap, tuple(sorted((k, str(v)) for k, v in config.kafka_properties.items())))
    with _shared_lock:
        producer = _shared.get(key)
        if producer is None:
            producer = _shared[key] = clients.producer(config, role=role)
        return producer


def send(config: Config, record: Record, role: str = "sender", producer: Producer | None = None) -> None:
    """Produce one record outside any transaction and return once it is durable; KafkaUnavailable if not."""
    shared = producer is None
    producer = producer or shared_producer(config, role)
    errors: list[str] = []
    produce(producer, config, record, lambda err, _m: errors.append(err.str()) if err else None)
    if producer.flush(30) or errors:
        if shared:  # it may be the producer that is broken (a fatal error): the next send makes a new one
            with _shared_lock:
                for key in [k for k, v in _shared.items() if v is producer]:
                    del _shared[key]
        raise KafkaUnavailable(f"could not write to {topics.name(config, record.role)}: "
                               f"{errors[0] if errors else 'timed out'}")
