"""The hot paths through the wire contract: an event read for routing without building an `Event`, the
inbox message written around the event's bytes without encoding the event again, and the events of a
client's batch written without encoding what they share once per event.

Both are byte-level twins of the codec, for the one place where its cost counted: with the codec and
the typed classes, about half of the router's CPU went into decoding each event into an `Event` and
encoding an `InboxMessage` around it again, and fastavro's reader alone still took half of what was
left once that was gone. They are held to the codec, not trusted beside it:

- `read_for_routing` reads an event of the *current* `Event` schema by hand and answers only when it
  is sure that the codec reads the same bytes to the same fields: every check it makes is at least as
  strict as fastavro's (a varint of at most 9 bytes, lengths inside the record, strict UTF-8, union
  branches 0 and 1 only, a map without sized blocks, an int of 32 bits, a time from 1970 to the year
  6429, no trailing bytes). Anything else — another schema version, an unusual encoding, junk — it
  hands to the codec, which decides and gives the reason. So what the router forwards the scheduler
  can read, and what it cannot, the router dead-letters.
- `encode_routed_event` writes what `InboxMessage.for_event(...).encode()` writes, byte for byte.
- `EventWriter` writes what `Event(...).encode()` writes for events that differ only in id, key and
  value: the codec encodes the fields they share once (with its checks), and each event is its id,
  key and value joined to those bytes.

tests/unit/protocol/test_forwarding.py holds both to the codec, on events of every shape and on
mutated bytes, and fails when `Event.avsc` or `InboxMessage.avsc` changes under them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache
from typing import NamedTuple

from aiflow.errors import RecordError
from aiflow.protocol.codec import EVENT, HEADER_SIZE, INBOX_MESSAGE, MAGIC, default_codec
from aiflow.protocol.messages import Event
from aiflow.protocol.records import RawRecord, check_received_size, inbox_hash, value_bytes, workflow_key


class EventBytes(NamedTuple):
    """An event as the router forwards it: its bytes, which go into the inbox unchanged and which the
    scheduler decodes, and the fields that route it."""

    data: bytes  # Avro single-object aiflow.Event: as received, or, for a plain event, made of it here
    key: str
    namespace: str
    workflow: str | None
    execution_id: str | None
    task: str | None
    context: Mapping[str, str]

    @classmethod
    def from_record(cls, msg: RawRecord) -> EventBytes:
        """A record of the events topic: the records `Event.from_record` accepts, and DecodeError with
        its reason for the others (its checks, then the hand reader or else the codec)."""
        check_received_size(msg)
        raw = value_bytes(msg)
        codec = default_codec()
        if raw is None or not codec.is_single_object(raw):
            event = Event.from_record(msg)  # a plain event: the router writes its Avro form
            return cls(event.encode(), event.key, event.namespace, event.workflow, event.execution_id, event.task,
                       event.context)
        fields = read_for_routing(raw)
        if fields is not None:
            return cls(raw, *fields)
        _, record = codec.decode(raw, expected=EVENT)  # DecodeError with the reason; else what Event.decode reads
        return cls(raw, record["key"], record["namespace"], record["workflow"], record["execution_id"],
                   record["task"], record["context"])


# -- reading ---------------------------------------------------------------------------------
# The current Event schema's fields, in order, as the hand reader reads them: a change to Event.avsc
# fails test_forwarding until the reader follows it.
READ_FIELDS = (("event_id", "string"), ("key", "string"), ("value", ["null", "string"]), ("namespace", "string"),
               ("sender", ["null", "string"]), ("workflow", ["null", "string"]),
               ("execution_id", ["null", "string"]), ("task", ["null", "string"]), ("try_number", ["null", "int"]),
               ("context", {"type": "map", "values": "string"}),
               ("send_time", {"type": "long", "logicalType": "timestamp-millis"}))
_MAX_MILLIS = 1 << 47  # about the year 6429: inside what fastavro turns into a datetime
_INT_RANGE = range(-(1 << 31), 1 << 31)


class _Unsure(Exception):
    """The hand reader leaves these bytes to the codec."""


def read_for_routing(data: bytes) -> tuple[str, str, str | None, str | None, str | None, dict[str, str]] | None:
    """(key, namespace, workflow, execution_id, task, context) of an event of the current schema, when
    the codec would read these bytes to the same; None: ask the codec."""
    if data[2:HEADER_SIZE] != _event_fingerprint():
        return None
    try:
        _, pos = _string(data, HEADER_SIZE)  # event_id
        key, pos = _string(data, pos)
        _, pos = _optional(data, pos)  # value
        namespace, pos = _string(data, pos)
        _, pos = _optional(data, pos)  # sender
        workflow, pos = _optional(data, pos)
        execution_id, pos = _optional(data, pos)
        task, pos = _optional(data, pos)
        branch = data[pos]  # try_number
        pos += 1
        if branch == 2:
            number, pos = _long(data, pos)
            if number not in _INT_RANGE:
                raise _Unsure
        elif branch:
            raise _Unsure
        context: dict[str, str] = {}
        while True:
            count, pos = _long(data, pos)
            if not count:
                break
            if count < 0:  # a block with its size: fine for Avro, never written by aiflow
                raise _Unsure
            for _ in range(count):
                name, pos = _string(data, pos)
                context[name], pos = _string(data, pos)
        millis, pos = _long(data, pos)  # send_time
        if not 0 <= millis < _MAX_MILLIS or pos != len(data):
            raise _Unsure
    except (_Unsure, IndexError, UnicodeDecodeError):
        return None
    return key, namespace, workflow, execution_id, task, context


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint of at most 9 bytes (so under 2**63, where fastavro's unsigned 64 bits are exact)."""
    byte = data[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    n = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 56:
            raise _Unsure


def _string(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise _Unsure
    return data[pos:end].decode("utf-8"), end


def _optional(data: bytes, pos: int) -> tuple[str | None, int]:
    """A ["null", "string"] union."""
    branch = data[pos]
    if branch == 0:
        return None, pos + 1
    if branch != 2:
        raise _Unsure
    return _string(data, pos + 1)


@lru_cache(maxsize=1)
def _event_fingerprint() -> bytes:
    return default_codec().fingerprint_of(EVENT)


# -- writing ---------------------------------------------------------------------------------
class EventWriter:
    """Encodes events that share every field but their id, key and value — a sender's batch: namespace,
    sender, the task's stamps, context and send time — as `Event.encode` would, byte for byte. The
    shared fields are encoded once, by the codec (RecordError if they cannot be)."""

    def __init__(self, shared: Event) -> None:
        encoded = shared.encode()
        head = self._head(shared.event_id, shared.key, shared.value)
        if not encoded.startswith(head):  # the schema's first fields moved: test_forwarding says so first
            raise RecordError(f"{EVENT} no longer starts with event_id, key and value")
        self._shared = encoded[len(head):]

    @staticmethod
    def _head(event_id: str, key: str, value: str | None) -> bytes:
        return b"".join((MAGIC, _event_fingerprint(), _avro_string(event_id), _avro_string(key),
                         b"\x00" if value is None else b"\x02" + _avro_string(value)))

    def encode(self, event_id: str, key: str, value: str | None) -> bytes:
        """The event's bytes; UnicodeEncodeError for text that cannot be encoded as UTF-8."""
        return self._head(event_id, key, value) + self._shared


class Inbox(NamedTuple):
    """A workflow's inbox as the router writes to it, worked out once (when its definition is indexed,
    so the first event for it costs no more than the next): the record key, the hash its partition is
    taken from (`records.inbox_partition`), and its namespace and workflow as an inbox message encodes them."""

    key: bytes
    hash: int
    fields: bytes

    @classmethod
    def of(cls, namespace: str, workflow: str) -> Inbox:
        """RecordError for names that cannot be encoded."""
        key = workflow_key(namespace, workflow)
        try:
            # namespace, workflow, kind EVENT (the enum's first symbol), no nested event (v2's field), and
            # the union branch of a present source
            fields = _avro_string(namespace) + _avro_string(workflow) + b"\x00\x00\x02"
            return cls(key.encode("utf-8"), inbox_hash(key), fields)
        except UnicodeEncodeError as exc:
            raise RecordError(f"record does not fit {INBOX_MESSAGE}: {exc}") from None


def encode_routed_event(inbox: Inbox, event: bytes, source: str, execution_id: str | None,
                        message_id: str | None = None, create_time: datetime | None = None) -> bytes:
    """What `InboxMessage.for_event(<inbox's namespace and workflow>, <the event in event>, source).encode()`
    writes (with that message id and create time, or a new id and now), made around the event's bytes.
    RecordError for text that cannot be encoded."""
    millis = _millis(create_time) if create_time is not None else time.time_ns() // 1_000_000
    try:
        return b"".join((
            _inbox_header(), _avro_string(message_id or os.urandom(16).hex()), inbox.fields,
            _avro_string(source), _NO_REPORT_NO_COMMAND,
            b"\x00" if execution_id is None else b"\x02" + _avro_string(execution_id),
            _NO_TASK_NO_ARGS, _avro_time(millis), b"\x02", _avro_long(len(event)), event))
    except UnicodeEncodeError as exc:
        raise RecordError(f"record does not fit {INBOX_MESSAGE}: {exc}") from None


# Avro binary: an int or long is zig-zag coded, then written 7 bits a byte (low first, the high bit set
# on all but the last); a string is its length, then its UTF-8 bytes; a union, its branch's index first.
_NO_REPORT_NO_COMMAND = b"\x00\x00"  # two unions on their null branch
_NO_TASK_NO_ARGS = b"\x00\x00"  # a union on its null branch, an empty map
_SMALL_LONGS = [bytes(((n << 1) ^ (n >> 63),)) for n in range(-64, 64)]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _avro_long(n: int) -> bytes:
    if -64 <= n < 64:
        return _SMALL_LONGS[n + 64]
    z = (n << 1) ^ (n >> 63)
    if z < 0x4000:  # two bytes: a string of up to 8 KiB
        return bytes(((z & 0x7F) | 0x80, z >> 7))
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _avro_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _avro_long(len(data)) + data


@lru_cache(maxsize=2)
def _avro_time(millis: int) -> bytes:
    """A timestamp-millis: the same for every message made within one millisecond."""
    return _avro_long(millis)


def _millis(moment: datetime) -> int:
    """timestamp-millis as fastavro writes it (integer arithmetic: a float timestamp can round down)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@lru_cache(maxsize=1)
def _inbox_header() -> bytes:
    return MAGIC + default_codec().fingerprint_of(INBOX_MESSAGE)
