"""Every message kind that crosses a process, as a frozen, typed class with its encoding next to it.

A record becomes one of these once, where it is read (`from_record`), and stays one until it is
written again (`to_record`); services never look into dictionaries. Decoding fails in one way only:
`DecodeError` with the reason, which `deadletter.decode_or_dead_letter` turns into a dead letter.
The Avro schemas are the `.avsc` files in `avro/`; `to_avro` and `from_avro` map between them and
these classes.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from functools import cached_property
from typing import Any, ClassVar, TypeVar

from aiflow.errors import DecodeError, EventError, RecordError
from aiflow.protocol import topics
from aiflow.protocol.codec import (
    CONTROL_COMMAND,
    EVENT,
    INBOX_MESSAGE,
    LOG_CHUNK,
    STATE_RECORD,
    TASK_COMMAND,
    WORKFLOW_DEFINITION,
    default_codec,
)
from aiflow.protocol.commands import Command
from aiflow.protocol.records import (
    MAX_EVENT_BYTES,
    MAX_LOG_CHUNK_BYTES,
    NAMESPACE_HEADER,
    RawRecord,
    Record,
    check_received_size,
    check_snapshot_ref,
    header,
    key_text,
    record_time,
    try_key,
    value_bytes,
    workflow_key,
)

DEFAULT_NAMESPACE = "default"

M = TypeVar("M", bound="_Message")


def _now() -> datetime:
    """Now, to the millisecond: what Avro's timestamp-millis keeps, so a message decodes to itself."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    """32 random hex digits (the form of uuid4().hex, at a fifth of its cost: the router makes one per event)."""
    return os.urandom(16).hex()


class _Message(ABC):
    """Encoding shared by the message kinds: Avro single-object bytes, a record of its topic role.
    Each kind says how it maps to its schema and what its record key is."""

    SCHEMA: ClassVar[str]
    ROLE: ClassVar[str]

    @abstractmethod
    def to_avro(self) -> dict[str, Any]: ...

    @classmethod
    @abstractmethod
    def from_avro(cls: type[M], record: dict[str, Any]) -> M: ...

    @property
    @abstractmethod
    def record_key(self) -> str: ...

    def encode(self) -> bytes:
        """The Avro single-object bytes; RecordError if a field cannot be encoded."""
        return default_codec().encode(self.SCHEMA, self.to_avro())

    @classmethod
    def decode(cls: type[M], data: bytes) -> M:
        """The message these bytes hold; DecodeError with the reason if they hold none of this kind."""
        _, record = default_codec().decode(data, expected=cls.SCHEMA)
        try:
            return cls.from_avro(record)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DecodeError(f"{cls.SCHEMA} with bad fields: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_record(cls: type[M], msg: RawRecord) -> M:
        """Decode a consumed record of this kind's topic (size, key and value checked)."""
        check_received_size(msg)
        key = key_text(msg)
        value = value_bytes(msg)
        if value is None:
            raise DecodeError(f"a {cls.ROLE} record without a value")
        message = cls.decode(value)
        if key != message.record_key:
            raise DecodeError(f"record key {key!r} does not match the {cls.SCHEMA} it holds ({message.record_key!r})")
        return message

    def to_record(self, partition: int | None = None) -> Record:
        return Record(self.ROLE, self.record_key, self.encode(), partition)


# -- events ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event(_Message):
    """An event. `offset`, `partition` and `create_time` (the broker's clock) are set once it is stored.

    A *plain* event comes from an ordinary producer: its key is the record key, its value the bytes
    as UTF-8 text, its namespace the `aiflow.namespace` header (or `default`).
    """

    SCHEMA: ClassVar[str] = EVENT
    ROLE: ClassVar[str] = topics.EVENTS

    key: str
    value: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    sender: str | None = None
    workflow: str | None = None
    execution_id: str | None = None
    task: str | None = None
    try_number: int | None = None
    context: Mapping[str, str] = field(default_factory=dict)
    event_id: str = field(default_factory=new_id)
    send_time: datetime | None = None
    create_time: datetime | None = None
    partition: int | None = None
    offset: int | None = None
    plain: bool = False

    @property
    def record_key(self) -> str:
        return self.key

    def to_avro(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id, "key": self.key, "value": self.value, "namespace": self.namespace,
            "sender": self.sender, "workflow": self.workflow, "execution_id": self.execution_id,
            "task": self.task, "try_number": self.try_number, "context": dict(self.context),
            "send_time": self.send_time or _now(),
        }

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Event:
        return cls(key=record["key"], value=record["value"], namespace=record["namespace"],
                   sender=record["sender"], workflow=record["workflow"], execution_id=record["execution_id"],
                   task=record["task"], try_number=record["try_number"], context=dict(record["context"]),
                   event_id=record["event_id"], send_time=record["send_time"])

    def checked_encode(self) -> bytes:
        """The encoding of an event that comes in from outside (`checked_event_bytes`)."""
        return checked_event_bytes(self.key, self.value, self.encode)

    def to_record(self, partition: int | None = None) -> Record:
        return Record(self.ROLE, self.key, self.checked_encode(), partition,
                      ((NAMESPACE_HEADER, self.namespace.encode("utf-8", errors="replace")),))

    @classmethod
    def from_record(cls, msg: RawRecord) -> Event:
        """A record of the events topic as an event: Avro single-object bytes are an aiflow event,
        anything else is a plain event."""
        check_received_size(msg)
        raw = value_bytes(msg)
        if default_codec().is_single_object(raw):
            assert raw is not None
            event = cls.decode(raw)
        else:
            key = key_text(msg)
            if not key:
                raise DecodeError("plain event without a record key (the key is the event key)")
            try:
                value = raw.decode("utf-8") if raw else None
            except UnicodeDecodeError as exc:
                raise DecodeError(f"plain event whose value is not UTF-8 text: {exc}") from None
            event = cls(key=key, value=value, namespace=header(msg, NAMESPACE_HEADER) or DEFAULT_NAMESPACE,
                        event_id=f"{msg.topic()}-{msg.partition()}-{msg.offset()}", plain=True)
        return event.stored(msg.partition(), msg.offset(), record_time(msg))

    def stored(self, partition: int | None, offset: int | None, create_time: datetime | None) -> Event:
        """This event as stored at that position."""
        return replace(self, partition=partition, offset=offset, create_time=create_time)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view, as the CLI prints it."""
        return {
            "key": self.key, "value": self.value, "namespace": self.namespace, "sender": self.sender,
            "workflow": self.workflow, "execution_id": self.execution_id, "task": self.task,
            "try_number": self.try_number, "context": dict(self.context), "event_id": self.event_id,
            "create_time": self.create_time.isoformat() if self.create_time else None,
            "partition": self.partition, "offset": self.offset, "plain": self.plain,
        }


def checked_event_bytes(key: object, value: object, encode: Callable[[], bytes]) -> bytes:
    """`encode()`, the bytes of an event with this key and value that comes in from outside: EventError,
    naming the limit, for an event that has no key, cannot be encoded or is over MAX_EVENT_BYTES."""
    if not isinstance(key, str) or not key:
        raise EventError("an event key must be a non-empty string")
    if value is not None and not isinstance(value, str):
        raise EventError(f"event {key!r}: the value must be a string or None, got {type(value).__name__}")
    try:
        data = encode()
    except (RecordError, UnicodeEncodeError) as exc:
        raise EventError(f"event {key[:80]!r} cannot be encoded: {exc}") from None
    if len(data) > MAX_EVENT_BYTES:
        raise EventError(f"event {key[:80]!r} is {len(data):,} bytes, over the limit of "
                         f"{MAX_EVENT_BYTES:,} bytes for an event (key, value and context)")
    return data


# -- the inbox -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskStatusReport:
    """A worker's report on a try: a status (RUNNING, SUCCESS, FAILED, STOPPED) or, with none, a heartbeat."""

    execution_id: str
    task: str
    try_number: int
    status: str | None
    message: str = ""
    worker: str = ""
    pid: int | None = None

    def to_avro(self) -> dict[str, Any]:
        return {"execution_id": self.execution_id, "task": self.task, "try_number": self.try_number,
                "status": self.status, "message": self.message, "worker": self.worker, "pid": self.pid}

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> TaskStatusReport:
        return cls(record["execution_id"], record["task"], record["try_number"], record["status"],
                   record["message"], record["worker"], record["pid"])


class InboxKind(str, Enum):
    COMMAND = "COMMAND"
    EVENT = "EVENT"
    TASK_STATUS = "TASK_STATUS"
    HEARTBEAT = "HEARTBEAT"
    WORKER = "WORKER"  # a worker's beacon: it is alive and reaches Kafka, whether or not it runs tries


@dataclass(frozen=True)
class InboxMessage(_Message):
    """What the scheduler decides on, keyed by workflow: a command, a routed event or a task report.

    A routed event travels as the bytes the events topic held (`event_bytes`, from v3 on: the router
    forwards them without decoding and encoding them again, protocol/forwarding.py); `event` is those
    bytes decoded. Records written before v3 nest the event itself, and read the same.
    """

    SCHEMA: ClassVar[str] = INBOX_MESSAGE
    ROLE: ClassVar[str] = topics.INBOX

    namespace: str
    workflow: str
    kind: InboxKind
    event: Event | None = None
    source: str | None = None
    report: TaskStatusReport | None = None
    command: Command | None = None
    execution_id: str | None = None
    task: str | None = None
    args: Mapping[str, str] = field(default_factory=dict)
    message_id: str = field(default_factory=new_id)
    create_time: datetime = field(default_factory=_now)

    @property
    def record_key(self) -> str:
        return workflow_key(self.namespace, self.workflow)

    @classmethod
    def for_command(cls, namespace: str, workflow: str, command: Command, execution_id: str | None = None,
                    task: str | None = None, args: Mapping[str, str] | None = None) -> InboxMessage:
        return cls(namespace, workflow, InboxKind.COMMAND, command=command, execution_id=execution_id, task=task,
                   args=dict(args or {}))

    @classmethod
    def for_event(cls, namespace: str, workflow: str, event: Event, source: str) -> InboxMessage:
        return cls(namespace, workflow, InboxKind.EVENT, event=event, source=source, execution_id=event.execution_id)

    @classmethod
    def for_worker(cls, worker: str, free_slots: int,
                   queues: tuple[str, ...] = (topics.DEFAULT_QUEUE,)) -> InboxMessage:
        """A worker's beacon, with how many more tries it could take now and the queues it serves;
        produced to every inbox partition, so every scheduler hears it."""
        return cls("", worker, InboxKind.WORKER, args={"free_slots": str(free_slots), "queues": ",".join(queues)})

    @property
    def queues(self) -> tuple[str, ...]:
        """Of a beacon: the queues its worker serves (a worker from before queues: the default one)."""
        return tuple(q for q in self.args.get("queues", topics.DEFAULT_QUEUE).split(",") if q) or (
            topics.DEFAULT_QUEUE,)

    @property
    def free_slots(self) -> int:
        """Of a beacon: how many more tries its worker could take (unknown: taken as some)."""
        text = self.args.get("free_slots", "1")
        return int(text) if text.isdigit() else 1

    @classmethod
    def for_report(cls, namespace: str, workflow: str, report: TaskStatusReport) -> InboxMessage:
        kind = InboxKind.TASK_STATUS if report.status else InboxKind.HEARTBEAT
        return cls(namespace, workflow, kind, report=report, execution_id=report.execution_id, task=report.task)

    def to_avro(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "namespace": self.namespace, "workflow": self.workflow,
                "kind": self.kind.value, "event": None, "source": self.source,
                "report": self.report.to_avro() if self.report else None,
                "command": self.command.value if self.command else None, "execution_id": self.execution_id,
                "task": self.task, "args": dict(self.args), "create_time": self.create_time,
                "event_bytes": self.event.encode() if self.event else None}

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> InboxMessage:
        if record["event_bytes"] is not None:  # v3
            try:
                event: Event | None = Event.decode(record["event_bytes"])
            except DecodeError as exc:
                raise ValueError(f"its event cannot be read: {exc}") from None
        else:  # written before v3 (or no event)
            event = Event.from_avro(record["event"]) if record["event"] else None
        message = cls(namespace=record["namespace"], workflow=record["workflow"], kind=InboxKind(record["kind"]),
                      event=event, source=record["source"],
                      report=TaskStatusReport.from_avro(record["report"]) if record["report"] else None,
                      command=Command(record["command"]) if record["command"] else None,
                      execution_id=record["execution_id"], task=record["task"], args=dict(record["args"]),
                      message_id=record["message_id"], create_time=record["create_time"])
        needed = {InboxKind.COMMAND: message.command, InboxKind.EVENT: message.event,
                  InboxKind.TASK_STATUS: message.report, InboxKind.HEARTBEAT: message.report,
                  InboxKind.WORKER: message.workflow}[message.kind]
        if not needed:
            raise ValueError(f"a {message.kind.value} inbox message without its {message.kind.value.lower()} part")
        return message


# -- commands to workers ---------------------------------------------------------------------
@dataclass(frozen=True)
class TaskCommand(_Message):
    """START one try: which snapshot, which file, which task."""

    SCHEMA: ClassVar[str] = TASK_COMMAND
    ROLE: ClassVar[str] = topics.TASKS

    namespace: str
    workflow: str
    execution_id: str
    task: str
    try_number: int
    snapshot_uri: str
    snapshot_sha256: str
    workflow_file: str
    timeout_seconds: float | None = None
    command_id: str = field(default_factory=new_id)
    create_time: datetime = field(default_factory=_now)
    queue: str = topics.DEFAULT_QUEUE  # written to that queue's tasks topic (`to_record`)

    @property
    def record_key(self) -> str:
        return self.execution_id

    def to_record(self, partition: int | None = None) -> Record:
        return Record(topics.tasks_role(self.queue), self.record_key, self.encode(), partition)

    @property
    def try_key(self) -> tuple[str, str, int]:
        return self.execution_id, self.task, self.try_number

    def to_avro(self) -> dict[str, Any]:
        return {"command_id": self.command_id, "namespace": self.namespace, "workflow": self.workflow,
                "execution_id": self.execution_id, "task": self.task, "try_number": self.try_number,
                "snapshot_uri": self.snapshot_uri, "snapshot_sha256": self.snapshot_sha256,
                "workflow_file": self.workflow_file, "timeout_seconds": self.timeout_seconds,
                "create_time": self.create_time, "queue": self.queue}

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> TaskCommand:
        check_snapshot_ref(record["snapshot_sha256"], record["workflow_file"])
        return cls(record["namespace"], record["workflow"], record["execution_id"], record["task"],
                   record["try_number"], record["snapshot_uri"], record["snapshot_sha256"], record["workflow_file"],
                   record["timeout_seconds"], record["command_id"], record["create_time"], record["queue"])

    def report(self, status: str | None, message: str = "", worker: str = "", pid: int | None = None) -> InboxMessage:
        """The inbox message that reports on this try (status None: a heartbeat)."""
        return InboxMessage.for_report(self.namespace, self.workflow, TaskStatusReport(
            self.execution_id, self.task, self.try_number, status, message, worker, pid))


@dataclass(frozen=True)
class ControlCommand(_Message):
    """STOP or KILL a try (or every try of an execution, or of one of its tasks); every worker reads it."""

    SCHEMA: ClassVar[str] = CONTROL_COMMAND
    ROLE: ClassVar[str] = topics.CONTROL

    kind: str  # STOP | KILL
    execution_id: str
    task: str | None = None
    try_number: int | None = None
    reason: str = ""
    command_id: str = field(default_factory=new_id)
    create_time: datetime = field(default_factory=_now)

    @property
    def record_key(self) -> str:
        return self.execution_id

    def matches(self, execution_id: str, task: str, try_number: int) -> bool:
        return (execution_id == self.execution_id and self.task in (None, task)
                and self.try_number in (None, try_number))

    def to_avro(self) -> dict[str, Any]:
        return {"command_id": self.command_id, "kind": self.kind, "execution_id": self.execution_id,
                "task": self.task, "try_number": self.try_number, "reason": self.reason,
                "create_time": self.create_time}

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> ControlCommand:
        return cls(record["kind"], record["execution_id"], record["task"], record["try_number"], record["reason"],
                   record["command_id"], record["create_time"])


# -- task output -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LogChunk(_Message):
    """A piece of a try's output, as its worker shipped it from the try's log file: `data` are the file's
    bytes from `position` on. The last chunk of a try has `end` set (and may carry the last bytes).

    Positions make reading idempotent: a reader keeps the position it has reached and skips, or cuts,
    what it has already seen, so a chunk shipped twice prints once.
    """

    SCHEMA: ClassVar[str] = LOG_CHUNK
    ROLE: ClassVar[str] = topics.LOGS

    namespace: str
    workflow: str
    execution_id: str
    task: str
    try_number: int
    position: int
    data: bytes = b""
    end: bool = False
    worker: str = ""
    create_time: datetime = field(default_factory=_now)

    @property
    def record_key(self) -> str:
        return try_key(self.execution_id, self.task, self.try_number)

    @property
    def end_position(self) -> int:
        """The position after this chunk's data."""
        return self.position + len(self.data)

    def to_avro(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "workflow": self.workflow, "execution_id": self.execution_id,
                "task": self.task, "try_number": self.try_number, "position": self.position, "data": self.data,
                "end": self.end, "worker": self.worker, "create_time": self.create_time}

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> LogChunk:
        chunk = cls(record["namespace"], record["workflow"], record["execution_id"], record["task"],
                    record["try_number"], record["position"], record["data"], record["end"], record["worker"],
                    record["create_time"])
        if chunk.position < 0:
            raise ValueError(f"a log chunk at position {chunk.position}")
        if len(chunk.data) > MAX_LOG_CHUNK_BYTES:
            raise ValueError(f"a log chunk of {len(chunk.data):,} bytes, over {MAX_LOG_CHUNK_BYTES:,}")
        return chunk


# -- the scheduler's changelog ---------------------------------------------------------------
@dataclass(frozen=True)
class StateRecord(_Message):
    """The latest state of one entity (an EXECUTION, or a WORKFLOW's triggers and schedules), as JSON.

    It is written to the state partition with the number of the inbox partition it belongs to.
    """

    SCHEMA: ClassVar[str] = STATE_RECORD
    ROLE: ClassVar[str] = topics.STATE

    entity: str  # EXECUTION | WORKFLOW
    entity_id: str
    namespace: str
    workflow: str
    version: int
    body: str  # a JSON object
    update_time: datetime = field(default_factory=_now)

    @property
    def record_key(self) -> str:
        return self.entity_id

    @cached_property
    def _parsed(self) -> Any:
        try:
            return json.loads(self.body)
        except RecursionError:
            raise ValueError("the body is JSON nested too deeply") from None

    def data(self) -> dict[str, Any]:
        """The body as a dictionary (checked to be one, and parsed once, when the record was decoded)."""
        parsed: dict[str, Any] = self._parsed
        return parsed

    def queued_tries(self) -> set[tuple[str, str, int]]:
        """(execution, task, try) of the tries of an EXECUTION record that wait for a worker: each
        task's latest try when it is QUEUED (the body is `scheduler.core.Execution.to_dict()`)."""
        if self.entity != "EXECUTION":
            return set()
        body = self.data()
        found = set()
        for task, tries in (body.get("tries") or {}).items():
            if isinstance(tries, list) and tries and isinstance(tries[-1], dict) and \
                    tries[-1].get("status") == "QUEUED" and isinstance(tries[-1].get("try_number"), int):
                found.add((str(body.get("id")), str(task), int(tries[-1]["try_number"])))
        return found

    def to_avro(self) -> dict[str, Any]:
        return {"entity": self.entity, "entity_id": self.entity_id, "namespace": self.namespace,
                "workflow": self.workflow, "version": self.version, "body": self.body,
                "update_time": self.update_time}

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> StateRecord:
        state = cls(record["entity"], record["entity_id"], record["namespace"], record["workflow"],
                    record["version"], record["body"], record["update_time"])
        if not isinstance(state._parsed, dict):
            raise ValueError("the body is not a JSON object")
        return state


# -- workflow definitions --------------------------------------------------------------------
@dataclass(frozen=True)
class WorkflowDefinition(_Message):
    """A workflow's current definition on the compacted workflows topic: its latest snapshot, whether
    it is enabled, the event keys its rules and triggers listen to, its triggers and schedules."""

    SCHEMA: ClassVar[str] = WORKFLOW_DEFINITION
    ROLE: ClassVar[str] = topics.WORKFLOWS

    namespace: str
    workflow: str
    version: int
    snapshot_uri: str
    snapshot_sha256: str
    workflow_file: str
    enabled: bool = True
    rule_keys: tuple[tuple[str, str], ...] = ()
    trigger_keys: tuple[tuple[str, str], ...] = ()
    definition: str = "{}"
    triggers: str = "[]"  # JSON: [{"id": int, "condition": spec, "paused": bool}]
    schedules: str = "[]"  # JSON: [{"id": int, "expression": str, "paused": bool}]
    # Every snapshot that may run, (version, uri, sha256, workflow file): the latest and the earlier
    # ones not deleted. Empty in records written before this field existed.
    snapshots: tuple[tuple[int, str, str, str], ...] = ()

    @property
    def task_queues(self) -> set[str]:
        """The queues the workflow's tasks run on, from its description (the default one if it cannot be read)."""
        try:
            tasks = json.loads(self.definition).get("tasks", [])
            return {str(t.get("queue") or topics.DEFAULT_QUEUE) for t in tasks}
        except (ValueError, AttributeError):
            return {topics.DEFAULT_QUEUE}

    def announces(self, uri: str, sha256: str, workflow_file: str, version: int | None = None) -> bool:
        """Whether this snapshot (of this version, when given) may run."""
        refs = self.snapshots or ((self.version, self.snapshot_uri, self.snapshot_sha256, self.workflow_file),)
        return any((uri, sha256, workflow_file) == (u, sha, f) and version in (None, v) for v, u, sha, f in refs)

    @property
    def record_key(self) -> str:
        return workflow_key(self.namespace, self.workflow)

    @property
    def workflow_id(self) -> tuple[str, str]:
        return self.namespace, self.workflow

    def to_avro(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "workflow": self.workflow, "version": self.version,
            "snapshot_uri": self.snapshot_uri, "snapshot_sha256": self.snapshot_sha256,
            "workflow_file": self.workflow_file, "enabled": self.enabled,
            "rule_keys": [{"namespace": ns, "key": k} for ns, k in self.rule_keys],
            "trigger_keys": [{"namespace": ns, "key": k} for ns, k in self.trigger_keys],
            "definition": self.definition, "triggers": self.triggers, "schedules": self.schedules,
            "snapshots": [{"version": v, "uri": u, "sha256": sha, "workflow_file": f}
                          for v, u, sha, f in self.snapshots],
            "update_time": _now(),
        }

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> WorkflowDefinition:
        definition = cls(
            namespace=record["namespace"], workflow=record["workflow"], version=record["version"],
            snapshot_uri=record["snapshot_uri"], snapshot_sha256=record["snapshot_sha256"],
            workflow_file=record["workflow_file"], enabled=record["enabled"],
            rule_keys=tuple((s["namespace"], s["key"]) for s in record["rule_keys"]),
            trigger_keys=tuple((s["namespace"], s["key"]) for s in record["trigger_keys"]),
            definition=record["definition"], triggers=record["triggers"], schedules=record["schedules"],
            snapshots=tuple((s["version"], s["uri"], s["sha256"], s["workflow_file"]) for s in record["snapshots"]))
        check_snapshot_ref(definition.snapshot_sha256, definition.workflow_file)
        for _, _, sha256, workflow_file in definition.snapshots:
            check_snapshot_ref(sha256, workflow_file)
        for name in ("triggers", "schedules"):
            try:
                parsed = json.loads(getattr(definition, name))
            except RecursionError:
                raise ValueError(f"{name} is JSON nested too deeply") from None
            if not isinstance(parsed, list) or not all(isinstance(item, dict) and "id" in item for item in parsed):
                raise ValueError(f"{name} is not a JSON list of objects with an id")
        return definition


@dataclass(frozen=True)
class WorkflowDeleted:
    """A tombstone on the workflows topic: compaction forgets the workflow, the router drops its keys."""

    namespace: str
    workflow: str

    @property
    def workflow_id(self) -> tuple[str, str]:
        return self.namespace, self.workflow

    def to_record(self) -> Record:
        return Record(topics.WORKFLOWS, workflow_key(self.namespace, self.workflow), None)


def read_workflow_record(msg: RawRecord) -> WorkflowDefinition | WorkflowDeleted:
    """A record of the workflows topic: a definition, or a tombstone (a value of None)."""
    if msg.value() is not None:
        return WorkflowDefinition.from_record(msg)
    namespace, slash, name = (key_text(msg) or "").partition("/")
    if not slash or not namespace or not name:
        raise DecodeError(f"a workflows tombstone whose key {msg.key()!r} is not namespace/workflow")
    return WorkflowDeleted(namespace, name)
