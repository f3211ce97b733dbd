"""Records as they cross Kafka, without Kafka: what is produced (`Record`), what is read (`RawRecord`),
the size limits and the inbox partitioning.

`RawRecord` is the part of confluent-kafka's `Message` that decoding needs, as a protocol, so the
wire contract imports no Kafka client and unit tests can decode hand-made records.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from aiflow.errors import DecodeError, RecordError
from aiflow.protocol import topics

# The largest aiflow record on any topic but the dead-letter one: librdkafka's default
# `message.max.bytes`, just under the broker's default `max.message.bytes` (1,048,588), so a record
# aiflow accepts is one every default cluster accepts. Larger ones are junk to every reader.
MAX_RECORD_BYTES = 1_000_000
# The largest event accepted where events come in (the event client, the webhook, the bridge),
# counting key, value and context as encoded. It leaves room for the router to wrap the event into
# an inbox record under MAX_RECORD_BYTES.
MAX_EVENT_BYTES = 900_000
# A dead letter carries the bad record as received plus headers: it may be up to the broker's
# limit, so the dead-letter topic and aiflow's producers allow twice the default.
MAX_DEAD_LETTER_BYTES = 2 * 1024 * 1024
# What the dead-letter topic's `max.message.bytes` and the producers' `message.max.bytes` are set
# to: the dead-letter limit plus room for the headers.
PRODUCER_MAX_BYTES = MAX_DEAD_LETTER_BYTES + 64 * 1024

NAMESPACE_HEADER = "aiflow.namespace"
TIMESTAMP_NOT_AVAILABLE = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE, without importing it

Header = tuple[str, str | bytes | None]


class RawRecord(Protocol):
    """A record as consumed: confluent_kafka.Message has these methods."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> str | bytes | None: ...
    def headers(self) -> Mapping[str, str | bytes | None] | Sequence[tuple[str, str | bytes | None]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Record:
    """A record to produce: its topic role, key, encoded value, partition (None: by key) and headers."""

    role: str
    key: str | bytes | None
    value: bytes | None
    partition: int | None = None
    headers: tuple[Header, ...] = ()

    def key_bytes(self) -> bytes | None:
        if self.key is None or isinstance(self.key, bytes):
            return self.key
        try:
            return self.key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RecordError(f"the record key is not UTF-8 text: {exc}") from None

    def size(self) -> int:
        """Bytes of key, value and headers: what counts against the size limits."""
        headers = sum(len(k) + len(v or b"") for k, v in self.headers) if self.headers else 0
        return len(self.key_bytes() or b"") + len(self.value or b"") + headers

    def check_size(self) -> None:
        """Raise RecordError when the record is over its topic's limit (a permanent error)."""
        limit = PRODUCER_MAX_BYTES if self.role == topics.DLQ else MAX_RECORD_BYTES
        size = self.size()
        if size > limit:
            raise RecordError(f"a {self.role} record of {size:,} bytes is over the limit of {limit:,} bytes")


def key_text(msg: RawRecord) -> str | None:
    """The record key as text; DecodeError if it is not UTF-8."""
    raw = msg.key()
    if raw is None or isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"the record key is not UTF-8 text: {exc}") from None


def value_bytes(msg: RawRecord) -> bytes | None:
    raw = msg.value()
    return raw.encode("utf-8", errors="surrogateescape") if isinstance(raw, str) else raw


def check_received_size(msg: RawRecord) -> None:
    """DecodeError for a record over MAX_RECORD_BYTES: no aiflow writer makes one."""
    raw_key, value = msg.key(), value_bytes(msg)
    size = len(raw_key or b"") + len(value or b"")
    if size > MAX_RECORD_BYTES:
        raise DecodeError(f"a record of {size:,} bytes is over the limit of {MAX_RECORD_BYTES:,} bytes")


def header_items(msg: RawRecord) -> list[tuple[str, bytes]]:
    """The record's headers as (name, bytes) pairs, in order (a header without a value: empty bytes)."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    return [(k, v if isinstance(v, bytes) else str(v or "").encode("utf-8", errors="replace")) for k, v in pairs]


def header(msg: RawRecord, name: str) -> str | None:
    for key, value in header_items(msg):
        if key == name:
            return value.decode("utf-8", errors="replace")
    return None


def record_time(msg: RawRecord) -> datetime | None:
    kind, millis = msg.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)


def source_of(msg: RawRecord) -> str:
    """Where a record was read: topic/partition/offset."""
    return f"{msg.topic()}/{msg.partition()}/{msg.offset()}"


_HEX64 = frozenset("0123456789abcdef")


def check_sha256(sha256: str) -> None:
    """ValueError unless a snapshot's sha256 is 64 lowercase hex digits (it names folders and blobs)."""
    if len(sha256) != 64 or not set(sha256) <= _HEX64:
        raise ValueError(f"snapshot sha256 {sha256[:80]!r} is not 64 hex digits")


def check_workflow_path(workflow_file: str) -> None:
    """ValueError unless the workflow file is a relative path that stays inside its snapshot (no `..`,
    not absolute): a command cannot point a worker at another file."""
    parts = workflow_file.replace("\\", "/").split("/")
    if not workflow_file or workflow_file.startswith("/") or ".." in parts or ":" in parts[0]:
        raise ValueError(f"workflow file {workflow_file[:200]!r} is not a relative path inside the snapshot")


def check_snapshot_ref(sha256: str, workflow_file: str) -> None:
    """Both checks of a snapshot reference in a message."""
    check_sha256(sha256)
    check_workflow_path(workflow_file)


def parse_source(source: str) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of a `source_of` string, or None if it is not one."""
    topic, _, rest = source.rpartition("/")
    topic, _, partition = topic.rpartition("/")
    if not topic or not partition.isdigit() or not rest.lstrip("-").isdigit():
        return None
    return topic, int(partition), int(rest)


def workflow_key(namespace: str, workflow: str) -> str:
    """The inbox record key: every input about one workflow goes to one partition, in order."""
    return f"{namespace}/{workflow}"


def inbox_partition(key: str, partitions: int) -> int:
    """The inbox partition of a workflow. Chosen by aiflow, not by the client's partitioner, so a
    scheduler knows which workflows it owns (for their schedules) before any of their input arrives."""
    return inbox_hash(key) % partitions


def inbox_hash(key: str) -> int:
    """What `inbox_partition` takes modulo the partition count."""
    return zlib.crc32(key.encode("utf-8", errors="surrogatepass"))


# The most output one record of the logs topic carries: far under MAX_RECORD_BYTES, so a chatty task
# makes records of a size brokers and readers handle well, and one chunk never waits long to fill.
MAX_LOG_CHUNK_BYTES = 64 * 1024


def try_key(execution_id: str, task: str, try_number: int) -> str:
    """The record key of a try's log chunks: every chunk of one try goes to one partition, in order."""
    return f"{execution_id}/{task}/{try_number}"


def log_partition(key: str, partitions: int) -> int:
    """The logs partition of a try. Chosen by aiflow (like the inbox partition), so a reader knows the one
    partition to read without depending on a client's partitioner."""
    return zlib.crc32(key.encode("utf-8", errors="surrogatepass")) % partitions
