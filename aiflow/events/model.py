"""The event: what users send and listen to, and how a Kafka record becomes one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from aiflow.errors import DecodeError
from aiflow.events.codec import EVENT, Codec

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


def header(msg: Message, name: str) -> str | None:
    headers = msg.headers() or []
    for key, value in headers if isinstance(headers, list) else headers.items():
        if key == name and value is not None:
            return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return None


def record_time(msg: Message) -> datetime | None:
    kind, millis = msg.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)


def event_from_record(codec: Codec, msg: Message) -> Event:
    """Decode a record of the events topic; raises DecodeError with the reason if it is not an event.

    A value in Avro single-object encoding is an aiflow event. Anything else is a *plain event*
    from an ordinary producer: key = record key, value = the bytes as UTF-8 text (empty = None),
    namespace = the `aiflow.namespace` header or `default`.
    """
    raw = msg.value()
    if codec.is_single_object(raw):
        assert raw is not None
        _, record = codec.decode(raw, expected=EVENT)
        event = Event.from_avro(record)
    else:
        raw_key = msg.key()
        if not raw_key:
            raise DecodeError("plain event without a record key (the key is the event key)")
        try:
            key = raw_key.decode("utf-8") if isinstance(raw_key, bytes) else str(raw_key)
            value = raw.decode("utf-8") if raw else None
        except UnicodeDecodeError as exc:
            raise DecodeError(f"plain event whose key or value is not UTF-8 text: {exc}") from None
        event = Event(key=key, value=value, namespace=header(msg, NAMESPACE_HEADER) or DEFAULT_NAMESPACE,
                      event_id=f"{msg.topic()}-{msg.partition()}-{msg.offset()}", plain=True)
    event.create_time = record_time(msg)
    event.partition = msg.partition()
    event.offset = msg.offset()
    return event
