"""The event: what users send and listen to. Pure data, no Kafka."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

NAMESPACE_HEADER = "aiflow.namespace"
DEFAULT_NAMESPACE = "default"


@dataclass
class Event:
    """An event. `offset`, `partition` and `create_time` (the broker's clock) are set once it is stored."""

    key: str
    value: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    sender: str | None = None
    workflow: str | None = None
    execution_id: str | None = None
    task: str | None = None
    try_number: int | None = None
    context: dict[str, str] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    send_time: datetime | None = None
    create_time: datetime | None = None
    partition: int | None = None
    offset: int | None = None
    plain: bool = False

    def to_avro(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id, "key": self.key, "value": self.value, "namespace": self.namespace,
            "sender": self.sender, "workflow": self.workflow, "execution_id": self.execution_id,
            "task": self.task, "try_number": self.try_number, "context": dict(self.context),
            "send_time": self.send_time or datetime.now(timezone.utc),
        }

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Event:
        return cls(key=record["key"], value=record["value"], namespace=record["namespace"],
                   sender=record["sender"], workflow=record["workflow"], execution_id=record["execution_id"],
                   task=record["task"], try_number=record["try_number"], context=dict(record["context"]),
                   event_id=record["event_id"], send_time=record["send_time"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view, as the CLI prints it."""
        return {
            "key": self.key, "value": self.value, "namespace": self.namespace, "sender": self.sender,
            "workflow": self.workflow, "execution_id": self.execution_id, "task": self.task,
            "try_number": self.try_number, "context": self.context, "event_id": self.event_id,
            "create_time": self.create_time.isoformat() if self.create_time else None,
            "partition": self.partition, "offset": self.offset, "plain": self.plain,
        }
