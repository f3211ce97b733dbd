"""Building and reading the records aiflow's processes send each other (schemas in avro/).

Each builder returns a `Record`: the topic role, the record key and the encoded value, so the
caller produces it in whatever transaction it is in.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from aiflow.config import Config
from aiflow.errors import KafkaUnavailable
from aiflow.events.codec import (
    CONTROL_COMMAND,
    INBOX_MESSAGE,
    STATE_RECORD,
    TASK_COMMAND,
    default_codec,
)
from aiflow.events.model import Event
from aiflow.kafka import clients, dlq, topics


@dataclass(frozen=True)
class Record:
    role: str
    key: str
    value: bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, str | bytes | None], ...] = ()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def workflow_key(namespace: str, workflow: str) -> str:
    """The inbox record key: every input about one workflow goes to one partition, in order."""
    return f"{namespace}/{workflow}"


def inbox_partition(key: str, partitions: int) -> int:
    """The inbox partition of a workflow. Chosen by aiflow, not by the client's partitioner, so a
    scheduler knows which workflows it owns (for their schedules) before any of their input arrives."""
    return zlib.crc32(key.encode()) % partitions


def _inbox(namespace: str, workflow: str, kind: str, **fields: Any) -> Record:
    record = {"message_id": uuid.uuid4().hex, "namespace": namespace, "workflow": workflow, "kind": kind,
              "event": None, "source": None, "report": None, "command": None, "execution_id": None,
              "task": None, "args": {}, "create_time": _now(), **fields}
    return Record(topics.INBOX, workflow_key(namespace, workflow), default_codec().encode(INBOX_MESSAGE, record))


def inbox_command(namespace: str, workflow: str, command: str, execution_id: str | None = None,
                  task: str | None = None, args: dict[str, str] | None = None) -> Record:
    return _inbox(namespace, workflow, "COMMAND", command=command, execution_id=execution_id, task=task,
                  args=dict(args or {}))


def inbox_event(namespace: str, workflow: str, event: Event, source: str) -> Record:
    return _inbox(namespace, workflow, "EVENT", event=event.to_avro(), source=source,
                  execution_id=event.execution_id)


def inbox_report(namespace: str, workflow: str, execution_id: str, task: str, try_number: int,
                 status: str | None, message: str = "", worker: str = "", pid: int | None = None) -> Record:
    report = {"execution_id": execution_id, "task": task, "try_number": try_number, "status": status,
              "message": message, "worker": worker, "pid": pid}
    return _inbox(namespace, workflow, "TASK_STATUS" if status else "HEARTBEAT", report=report,
                  execution_id=execution_id, task=task)


def task_command(namespace: str, workflow: str, execution_id: str, task: str, try_number: int, snapshot_uri: str,
                 snapshot_sha256: str, workflow_file: str, timeout: float | None) -> Record:
    value = {"command_id": uuid.uuid4().hex, "namespace": namespace, "workflow": workflow,
             "execution_id": execution_id, "task": task, "try_number": try_number, "snapshot_uri": snapshot_uri,
             "snapshot_sha256": snapshot_sha256, "workflow_file": workflow_file, "timeout_seconds": timeout,
             "create_time": _now()}
    return Record(topics.TASKS, execution_id, default_codec().encode(TASK_COMMAND, value))


def control_command(execution_id: str, task: str | None, try_number: int | None, kind: str, reason: str) -> Record:
    value = {"command_id": uuid.uuid4().hex, "kind": kind, "execution_id": execution_id, "task": task,
             "try_number": try_number, "reason": reason, "create_time": _now()}
    return Record(topics.CONTROL, execution_id, default_codec().encode(CONTROL_COMMAND, value))


def state_record(entity: str, entity_id: str, namespace: str, workflow: str, version: int, body: str,
                 partition: int) -> Record:
    value = {"entity": entity, "entity_id": entity_id, "namespace": namespace, "workflow": workflow,
             "version": version, "body": body, "update_time": _now()}
    return Record(topics.STATE, entity_id, default_codec().encode(STATE_RECORD, value), partition)


def dead_letter(msg: Message, reason: str, reporter: str) -> Record:
    """The record as received, for the dead-letter topic, with why, where from and who found it."""
    return Record(topics.DLQ, (msg.key() or b"").decode("utf-8", errors="replace"), msg.value(),
                  headers=tuple(dlq.headers_for(msg, reason, reporter)))


def produce(producer: Producer, config: Config, record: Record,
            on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
    """Queue the record on the producer (in its open transaction, if any), waiting while its queue is full."""
    topic = topics.name(config, record.role)
    if record.role == topics.INBOX and record.partition is None:
        partitions = topics.partition_count(config, topics.INBOX)
        record = replace(record, partition=inbox_partition(record.key, partitions))
    while True:
        try:
            if record.partition is None:
                producer.produce(topic, key=record.key.encode(), value=record.value, headers=list(record.headers),
                                 on_delivery=on_delivery)
            else:
                producer.produce(topic, key=record.key.encode(), value=record.value, headers=list(record.headers),
                                 partition=record.partition, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


def send(config: Config, record: Record, role: str = "sender") -> None:
    """Produce one record outside any transaction and return once it is durable; KafkaUnavailable if not."""
    producer = clients.producer(config, role=role)
    errors: list[str] = []
    produce(producer, config, record, lambda err, _m: errors.append(err.str()) if err else None)
    if producer.flush(30) or errors:
        raise KafkaUnavailable(f"could not write to {topics.name(config, record.role)}: "
                               f"{errors[0] if errors else 'timed out'}")
