"""The dead-letter topic's contract: the headers a dead letter carries, and the one place where a
consumed record is decoded or else dead-lettered.

A dead letter is the bad record as received (key, value, headers) plus four headers: why
(`aiflow.dlq.reason`), where it was read (`aiflow.dlq.source`, topic/partition/offset), which
service found it (`aiflow.dlq.reporter`) and when (`aiflow.dlq.time`, epoch milliseconds). Only the
owner of a topic (topics.OWNERS) writes dead letters for it, in the transaction that commits its
offsets, so each bad record is dead-lettered exactly once; other readers skip it and say so in
their log, at most once a minute per reader.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from aiflow.errors import DecodeError
from aiflow.protocol import topics
from aiflow.protocol.records import (
    MAX_DEAD_LETTER_BYTES,
    PRODUCER_MAX_BYTES,
    Header,
    RawRecord,
    Record,
    header,
    header_items,
    record_time,
    source_of,
    value_bytes,
)

log = logging.getLogger(__name__)

REASON = "aiflow.dlq.reason"
SOURCE = "aiflow.dlq.source"
REPORTER = "aiflow.dlq.reporter"
TIME = "aiflow.dlq.time"
# Set when the value was cut to MAX_DEAD_LETTER_BYTES: its size as received.
TRUNCATED = "aiflow.dlq.truncated"
TRUNCATED_KEY = "aiflow.dlq.truncated.key"  # the key's size, when it was cut
TRUNCATED_HEADERS = "aiflow.dlq.truncated.headers"  # how many headers were left out
_MAX_PART = 64 * 1024

T = TypeVar("T")


def dead_letter(msg: RawRecord, reason: str, reporter: str) -> Record:
    """The record as received, for the dead-letter topic, with why, where from, who found it and when.

    It always fits the topic: a value over MAX_DEAD_LETTER_BYTES is cut (`aiflow.dlq.truncated` says
    its size), and so are a key or headers over 64 KiB (the original stays in its topic until
    retention).
    """
    kept: list[Header] = list(header_items(msg))
    if sum(len(k) + len(v or b"") for k, v in kept) > _MAX_PART:
        kept = [(TRUNCATED_HEADERS, str(len(kept)).encode())]
    raw_key = msg.key()
    key = raw_key.encode("utf-8", errors="surrogateescape") if isinstance(raw_key, str) else raw_key
    if key is not None and len(key) > _MAX_PART:
        kept.append((TRUNCATED_KEY, str(len(key)).encode()))
        key = key[:_MAX_PART]
    kept += [(REASON, reason[:4000].encode("utf-8", errors="replace")), (SOURCE, source_of(msg).encode()),
             (REPORTER, reporter.encode()), (TIME, str(int(time.time() * 1000)).encode())]
    room = PRODUCER_MAX_BYTES - len(key or b"") - sum(len(k) + len(v or b"") + 64 for k, v in kept) - 1024
    value = value_bytes(msg)
    if value is not None and len(value) > min(MAX_DEAD_LETTER_BYTES, room):
        kept.append((TRUNCATED, str(len(value)).encode()))
        value = value[:min(MAX_DEAD_LETTER_BYTES, room)]
    return Record(topics.DLQ, key, value, headers=tuple(kept))


@dataclass(frozen=True)
class DeadLetter:
    """A record of the dead-letter topic, as read back: the bad record and why it is there."""

    key: bytes | None
    value: bytes | None
    reason: str
    source: str  # topic/partition/offset where it was read; empty for a record written here directly
    reporter: str
    time: datetime | None
    offset: int | None
    truncated_from: int | None = None  # the value's size as received, when it was cut

    @classmethod
    def from_record(cls, msg: RawRecord) -> DeadLetter:
        """Any record of the topic, even one nobody dead-lettered (its reason is then empty)."""
        millis = header(msg, TIME)
        truncated = header(msg, TRUNCATED)
        raw_key = msg.key()
        return cls(key=raw_key.encode("utf-8", errors="surrogateescape") if isinstance(raw_key, str) else raw_key,
                   value=value_bytes(msg), reason=header(msg, REASON) or "", source=header(msg, SOURCE) or "",
                   reporter=header(msg, REPORTER) or "",
                   time=datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc) if millis and millis.isdigit()
                   else record_time(msg), offset=msg.offset(),
                   truncated_from=int(truncated) if truncated and truncated.isdigit() else None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view, as the CLI prints it: the key as text where it is text, the value's size."""
        return {"offset": self.offset, "time": self.time.isoformat() if self.time else None, "source": self.source,
                "reporter": self.reporter, "reason": self.reason,
                "key": self.key.decode("utf-8", errors="backslashreplace") if self.key is not None else None,
                "value_bytes": self.truncated_from or len(self.value or b""),
                "truncated": self.truncated_from is not None}


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, DecodeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _SkipLog:
    """Says that a reader skipped bad records: the first at once, then a count once a minute."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def skipped(self, reporter: str, msg: RawRecord, reason: str) -> None:
        now = time.monotonic()
        self._skipped[reporter] = self._skipped.get(reporter, 0) + 1
        if now - self._last.get(reporter, -3600.0) >= 60.0:
            owner = topics.OWNERS.get((msg.topic() or "").rsplit(".", 1)[-1])
            log.warning("%s: skipped %d unreadable record(s), the latest %s: %s (the %s dead-letters them)",
                        reporter, self._skipped[reporter], source_of(msg), reason, owner or "owner")
            self._last[reporter] = now
            self._skipped[reporter] = 0


_skips = _SkipLog()


def decode_or_dead_letter(msg: RawRecord, decode: Callable[[RawRecord], T], reporter: str,
                          dead_letters: list[Record] | None) -> T | None:
    """`decode(msg)`, or None when the record cannot be read.

    The owner of the topic passes the list of records its transaction will produce as
    `dead_letters`: the dead letter goes there, with the reason. A reader that does not own the
    topic passes None and the record is skipped (the owner dead-letters it). Any exception of the
    decoder counts as unreadable (a RecursionError on deeply nested JSON too): junk never stops a reader.
    """
    try:
        return decode(msg)
    except Exception as exc:
        reason = reason_of(exc)
    if dead_letters is None:
        _skips.skipped(reporter, msg, reason)
    else:
        log.warning("%s: record %s sent to the dead-letter topic: %s", reporter, source_of(msg), reason)
        dead_letters.append(dead_letter(msg, reason, reporter))
    return None
