"""The wire contract: the codec, every message kind as a typed class, the topic roles and their
owners, the dead-letter headers. Pure: it imports no Kafka client and does no I/O.

The names below are loaded on first use, so importing one light module of the package (`topics`,
`records`, `commands`) does not parse every Avro schema.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    **dict.fromkeys(["dead_letter", "decode_or_dead_letter"], "deadletter"),
    **dict.fromkeys(["DEFAULT_NAMESPACE", "ControlCommand", "Event", "InboxKind", "InboxMessage", "LogChunk",
                     "StateRecord", "TaskCommand", "TaskStatusReport", "WorkflowDefinition", "WorkflowDeleted",
                     "read_workflow_record"], "messages"),
    "Command": "commands",
    **dict.fromkeys(["MAX_EVENT_BYTES", "MAX_RECORD_BYTES", "NAMESPACE_HEADER", "RawRecord", "Record",
                     "inbox_partition", "source_of", "workflow_key"], "records"),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'aiflow.protocol' has no attribute {name!r}")
    return getattr(importlib.import_module(f"aiflow.protocol.{module}"), name)


__all__ = [
    "DEFAULT_NAMESPACE", "MAX_EVENT_BYTES", "MAX_RECORD_BYTES", "NAMESPACE_HEADER", "Command", "ControlCommand",
    "Event", "InboxKind", "InboxMessage", "LogChunk", "RawRecord", "Record", "StateRecord", "TaskCommand",
    "TaskStatusReport", "WorkflowDefinition", "WorkflowDeleted", "dead_letter", "decode_or_dead_letter",
    "inbox_partition", "read_workflow_record", "source_of", "workflow_key",
]
