"""The Kafka topic bridge: one event per record of an existing topic.

Guarantee: consume -> publish -> offsets in one Kafka transaction (aiflow/kafka/transactions.py),
so a bridge killed or restarted neither drops nor doubles an event. A record that cannot be mapped
goes to the dead-letter topic with the reason, in the same transaction; one a filter leaves out is
skipped. The bridge's consumer group is `<prefix>-bridge-<name>`.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from confluent_kafka import Message

from aiflow.config import Config
from aiflow.events.codec import EVENT, default_codec
from aiflow.events.model import NAMESPACE_HEADER, Event
from aiflow.kafka import dlq, messages, topics
from aiflow.kafka.messages import Record
from aiflow.kafka.transactions import TransactionalLoop
from connectors.mapping import Mapping, MappingError

log = logging.getLogger(__name__)


class TopicBridge:
    def __init__(self, config: Config, source_topic: str, mapping: Mapping, name: str | None = None) -> None:
        self.config = config
        self.mapping = mapping
        self.name = name or source_topic
        self.codec = default_codec()
        self.loop = TransactionalLoop(config, f"bridge-{self.name}", source_topic,
                                      f"{config.topic_prefix}-bridge-{self.name}")
        self.bridged = 0
        self.dead = 0

    def to_records(self, msg: Message) -> list[Record]:
        try:
            record = self.mapping.decode(msg.value())
            mapped = self.mapping.event(record, msg.key(), msg.headers() or [])  # type: ignore[arg-type]
        except MappingError as exc:
            self.dead += 1
            return [messages.dead_letter(msg, str(exc), f"bridge-{self.name}")]
        if mapped is None:
            return []
        key, value = mapped
        event = Event(key=key, value=value, namespace=self.mapping.namespace, sender=f"bridge-{self.name}",
                      context={"source": dlq.source_of(msg)}, send_time=datetime.now(timezone.utc))
        self.bridged += 1
        return [Record(topics.EVENTS, key, self.codec.encode(EVENT, event.to_avro()),
                       headers=((NAMESPACE_HEADER, self.mapping.namespace.encode()),))]

    def step(self) -> int:
        msgs = self.loop.poll()
        if not msgs:
            return 0
        self.loop.begin()
        for msg in msgs:
            for record in self.to_records(msg):
                messages.produce(self.loop.producer, self.config, record)
        self.loop.commit()
        return len(msgs)

    def run(self, stop: threading.Event) -> None:
        log.info("bridge %s: started", self.name)
        try:
            self.loop.run_until(stop, self.step)
        finally:
            self.loop.close()
            log.info("bridge %s: stopped after %d events, %d dead letters", self.name, self.bridged, self.dead)
