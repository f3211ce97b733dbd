"""Junk of every kind the services must survive, for every topic: shared by the unit tests of the
protocol and the integration and fault tests of the services.

Each junk record is a (key, value) pair that no reader of that topic can accept. On the events
topic a plain record with a UTF-8 key is an event whatever its value, so the JSON-shaped junk goes
there without a key.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from aiflow.protocol import topics
from aiflow.protocol.messages import (
    ControlCommand,
    Event,
    InboxMessage,
    StateRecord,
    TaskCommand,
    WorkflowDefinition,
)
from aiflow.protocol.records import MAX_RECORD_BYTES

KINDS = ("random-bytes", "wrong-schema", "non-utf8-key", "oversized", "nested-json", "lone-surrogate")
TOPICS = (topics.EVENTS, topics.INBOX, topics.TASKS, topics.CONTROL, topics.STATE, topics.WORKFLOWS)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
DEEP = "[" * 100_000 + "]" * 100_000  # deeper than Python's recursion limit
MARK = "@@@"  # three bytes, replaced by a lone surrogate's three bytes (ED A0 80) in an encoded record
SURROGATE_BYTES = "\ud800".encode("utf-8", errors="surrogatepass")


def good(role: str, marker: str = "x") -> tuple[bytes, bytes]:
    """A readable record of the topic, with `marker` in a string field."""
    if role == topics.EVENTS:
        message: Event | InboxMessage | TaskCommand | ControlCommand | StateRecord | WorkflowDefinition = \
            Event(key="k", value=marker, send_time=NOW)
    elif role == topics.INBOX:
        message = InboxMessage.for_event("default", "wf", Event(key="k", value=marker, send_time=NOW), "src")
    elif role == topics.TASKS:
        message = TaskCommand("default", "wf", "e1", marker, 1, "file:///x.zip", "0" * 64, "wf.py")
    elif role == topics.CONTROL:
        message = ControlCommand("STOP", "e1", marker, 1, "test")
    elif role == topics.STATE:
        message = StateRecord("EXECUTION", "e1", "default", "wf", 1, json.dumps({"id": "e1", "note": marker}))
    else:
        message = WorkflowDefinition("default", "wf", 1, "file:///x.zip", "0" * 64, marker)
    record = message.to_record()
    key = record.key_bytes()
    assert key is not None and record.value is not None
    return key, record.value


def junk(role: str, kind: str) -> tuple[bytes | None, bytes]:
    """One junk record (key, value) of this kind for this topic."""
    key, value = good(role)
    if kind == "random-bytes":
        return b"junk", os.urandom(64)
    if kind == "wrong-schema":
        other = topics.CONTROL if role != topics.CONTROL else topics.TASKS
        return good(other)
    if kind == "non-utf8-key":
        return b"\xff\xfe\xfa", value if role != topics.EVENTS else b"plain value"
    if kind == "oversized":
        return key, b"x" * (MAX_RECORD_BYTES + 1)
    if kind == "nested-json":
        if role == topics.STATE:
            return key, StateRecord("EXECUTION", "e1", "default", "wf", 1, DEEP).encode()
        if role == topics.WORKFLOWS:
            return key, WorkflowDefinition("default", "wf", 1, "file:///x.zip", "0" * 64, "wf.py",
                                           triggers=DEEP).encode()
        return (None if role == topics.EVENTS else key), DEEP.encode()
    if kind == "lone-surrogate":
        if role == topics.EVENTS:
            return b"k", b"value " + SURROGATE_BYTES
        key, value = good(role, MARK)
        assert value.count(MARK.encode()) == 1
        return key, value.replace(MARK.encode(), SURROGATE_BYTES)
    raise ValueError(kind)


def all_junk() -> list[tuple[str, str, bytes | None, bytes]]:
    """(topic role, kind, key, value) for every topic and kind."""
    return [(role, kind, *junk(role, kind)) for role in TOPICS for kind in KINDS]
