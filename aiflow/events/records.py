"""How a Kafka record of the events topic becomes an Event (or a reason it cannot)."""

from __future__ import annotations

from datetime import datetime, timezone

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from aiflow.errors import DecodeError
from aiflow.events.codec import EVENT, Codec
from aiflow.events.model import DEFAULT_NAMESPACE, NAMESPACE_HEADER, Event


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
