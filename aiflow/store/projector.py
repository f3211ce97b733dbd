"""The projector: writes the scheduler's state changelog into the SQL store.

Guarantee: every committed changelog record is applied at least once, in order per execution, with
idempotent upserts (a record older than the row's version is skipped), so a restart re-applies
nothing wrongly. It commits its offsets only after the database transaction, and it may lag without
harm: the scheduler never reads the database.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import KafkaError, Message
from sqlalchemy import select
from sqlalchemy.orm import Session

from aiflow.config import Config
from aiflow.events.codec import STATE_RECORD, default_codec
from aiflow.kafka import clients, topics
from aiflow.store.db import Store
from aiflow.store.models import ExecutionRow, TaskExecutionRow, WorkflowRow

log = logging.getLogger(__name__)


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value else None


def task_execution_id(execution_id: str, task: str, try_number: int) -> str:
    return f"{execution_id}/{task}/{try_number}"


def apply_execution(s: Session, body: dict[str, Any]) -> None:
    """Upsert one execution and its task tries from the scheduler's state of it."""
    workflow = s.scalar(select(WorkflowRow).where(WorkflowRow.namespace == body["namespace"],
                                                  WorkflowRow.name == body["workflow"]))
    if workflow is None:
        return  # deleted since: its history went with it
    row = s.get(ExecutionRow, body["id"])
    if row is None:
        row = ExecutionRow(id=body["id"], workflow_id=workflow.id)
        s.add(row)
    row.snapshot_version = body["snapshot"]["version"]
    row.status = body["status"]
    row.run_type = body["run_type"]
    row.begin_date = _time(body["create_time"])
    row.end_date = _time(body["end_time"])
    row.cause = body["cause"]
    for task, tries in body["tries"].items():
        for t in tries:
            tid = task_execution_id(body["id"], task, t["try_number"])
            trow = s.get(TaskExecutionRow, tid)
            if trow is None:
                trow = TaskExecutionRow(id=tid, execution_id=body["id"], task_name=task, try_number=t["try_number"])
                s.add(trow)
            trow.status = t["status"]
            trow.begin_date = _time(t["begin_time"] or t["queued_time"])
            trow.end_date = _time(t["end_time"])
            trow.message = t["message"]
            trow.cause = t["cause"]
            trow.worker = t["worker"]


class Projector:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config)
        self.codec = default_codec()
        self.consumer = clients.consumer(config, role="projector", group_id=f"{config.topic_prefix}-projector")
        self.consumer.subscribe([topics.name(config, topics.STATE)])
        self._versions: dict[str, int] = {}

    def apply(self, msgs: list[Message]) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for msg in msgs:
            value = msg.value()
            if value is None:
                continue
            _, record = self.codec.decode(value, expected=STATE_RECORD)
            if record["entity"] != "EXECUTION":
                continue
            if record["version"] <= self._versions.get(record["entity_id"], -1):
                continue
            self._versions[record["entity_id"]] = record["version"]
            latest[record["entity_id"]] = json.loads(record["body"])
        if latest:
            with self.store.session() as s:
                for body in latest.values():
                    apply_execution(s, body)

    def step(self) -> int:
        msgs = [m for m in clients.take(self.consumer, 500, 0.2)
                if m.error() is None or m.error().code() != KafkaError._PARTITION_EOF]  # type: ignore[union-attr]
        good = [m for m in msgs if m.error() is None]
        if good:
            self.apply(good)
            positions = [p for p in self.consumer.position(self.consumer.assignment()) if p.offset >= 0]
            if positions:
                self.consumer.commit(offsets=positions, asynchronous=False)
        return len(good)

    def run(self, stop: threading.Event) -> None:
        log.info("projector: started")
        try:
            while not stop.is_set():
                try:
                    self.step()
                except Exception:
                    log.exception("projector: a batch failed; retrying it")
                    for tp in self.consumer.committed(self.consumer.assignment(), timeout=10):
                        self.consumer.seek(tp if tp.offset >= 0 else tp.__class__(tp.topic, tp.partition, 0))
                    stop.wait(1.0)
        finally:
            self.consumer.close()
