"""Reading the scheduler's changelog (the compacted state topic) back: the latest entry of each entity."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, TopicPartition

from aiflow.config import Config
from aiflow.events.codec import STATE_RECORD, default_codec
from aiflow.kafka import clients, topics


@dataclass(frozen=True)
class StateEntry:
    entity: str  # EXECUTION or WORKFLOW
    entity_id: str
    partition: int
    version: int
    body: str  # JSON


def read_state(config: Config, partitions: Iterable[int]) -> dict[tuple[str, str], StateEntry]:
    """The latest committed entry of every entity in these partitions (read_committed, to the end)."""
    wanted = set(partitions)
    codec = default_codec()
    reader = clients.consumer(config, role="state-reader", settings={"enable.partition.eof": True})
    topic = topics.name(config, topics.STATE)
    reader.assign([TopicPartition(topic, p, 0) for p in wanted])
    at_end: set[int] = set()
    latest: dict[tuple[str, str], StateEntry] = {}
    try:
        while len(at_end) < len(wanted):
            for msg in reader.consume(1000, timeout=0.5):
                error = msg.error()
                partition = msg.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(partition)
                    continue
                at_end.discard(partition)
                value = msg.value()
                if value is None:
                    continue
                _, record = codec.decode(value, expected=STATE_RECORD)
                key = (record["entity"], record["entity_id"])
                known = latest.get(key)
                if known is None or record["version"] >= known.version:
                    latest[key] = StateEntry(record["entity"], record["entity_id"], partition, record["version"],
                                             record["body"])
    finally:
        reader.close()
    return latest
