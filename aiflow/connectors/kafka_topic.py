"""The Kafka topic bridge: one event per record of an existing topic.

Guarantee: consume -> publish -> offsets in one Kafka transaction (aiflow/kafka/transactions.py),
so a bridge killed or restarted neither drops nor doubles an event. A record that cannot be mapped
(not the format, JSON nested too deeply, a key or value that is not text, an event over the size
limit) goes to the dead-letter topic with the reason, in the same transaction; one a filter leaves
out is skipped. The bridge's consumer group is `<prefix>-bridge-<name>`.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from confluent_kafka import Message

from aiflow.config import Config
from aiflow.connectors.mapping import Mapping, MappingError
from aiflow.errors import EventError
from aiflow.kafka import sending
from aiflow.kafka.transactions import TransactionalLoop
from aiflow.protocol.deadletter import dead_letter
from aiflow.protocol.messages import Event
from aiflow.protocol.records import Record, source_of

log = logging.getLogger(__name__)


class TopicBridge:
    def __init__(self, config: Config, source_topic: str, mapping: Mapping, name: str | None = None) -> None:
        self.config = config
        self.mapping = mapping
        self.name = name or source_topic
        self.loop = TransactionalLoop(config, f"bridge-{self.name}", source_topic,
                                      f"{config.topic_prefix}-bridge-{self.name}")
        self.bridged = 0
        self.dead = 0

    def to_records(self, msg: Message) -> list[Record]:
        try:
            record = self.mapping.decode(msg.value())
            mapped = self.mapping.event(record, msg.key(), msg.headers() or [])  # type: ignore[arg-type]
            if mapped is None:
                return []
            key, value = mapped
            event = Event(key=key, value=value, namespace=self.mapping.namespace, sender=f"bridge-{self.name}",
                          context={"source": source_of(msg)}, send_time=datetime.now(timezone.utc))
            out = event.to_record()  # refuses an event over the size limit or with text that cannot be encoded
        except (MappingError, EventError) as exc:
            self.dead += 1
            return [dead_letter(msg, str(exc), f"bridge-{self.name}")]
        except Exception as exc:  # a decoder's own surprise: the record goes aside, never the bridge down
            log.exception("bridge %s: mapping %s failed unexpectedly", self.name, source_of(msg))
            self.dead += 1
            return [dead_letter(msg, f"cannot map the record: {type(exc).__name__}: {exc}", f"bridge-{self.name}")]
        self.bridged += 1
        return [out]

    def step(self) -> int:
        msgs = self.loop.poll()
        if not msgs:
            return 0
        self.loop.begin()
        for msg in msgs:
            for record in self.to_records(msg):
                sending.produce(self.loop.producer, self.config, record)
        self.loop.commit()
        return len(msgs)

    def run(self, stop: threading.Event) -> None:
        log.info("bridge %s: started", self.name)
        try:
            self.loop.run_until(stop, self.step)
        finally:
            self.loop.close()
            log.info("bridge %s: stopped after %d events, %d dead letters", self.name, self.bridged, self.dead)
