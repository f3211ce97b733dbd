"""The wire contract: the codec, every message kind as a typed class, the topic roles and their
owners, the dead-letter headers. Pure: it imports no Kafka client and does no I/O."""

from aiflow.protocol.deadletter import dead_letter, decode_or_dead_letter
from aiflow.protocol.messages import (
    DEFAULT_NAMESPACE,
    Command,
    ControlCommand,
    Event,
    InboxKind,
    InboxMessage,
    LogChunk,
    StateRecord,
    TaskCommand,
    TaskStatusReport,
    WorkflowDefinition,
    WorkflowDeleted,
    read_workflow_record,
)
from aiflow.protocol.records import (
    MAX_EVENT_BYTES,
    MAX_RECORD_BYTES,
    NAMESPACE_HEADER,
    RawRecord,
    Record,
    inbox_partition,
    source_of,
    workflow_key,
)

__all__ = [
    "DEFAULT_NAMESPACE", "MAX_EVENT_BYTES", "MAX_RECORD_BYTES", "NAMESPACE_HEADER", "Command", "ControlCommand",
    "Event", "InboxKind", "InboxMessage", "LogChunk", "RawRecord", "Record", "StateRecord", "TaskCommand",
    "TaskStatusReport", "WorkflowDefinition", "WorkflowDeleted", "dead_letter", "decode_or_dead_letter",
    "inbox_partition", "read_workflow_record", "source_of", "workflow_key",
]
