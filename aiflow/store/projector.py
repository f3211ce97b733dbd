"""The projector: writes the scheduler's state changelog into the SQL store.

Guarantee: every committed changelog record is applied at least once, in order per execution, with
idempotent upserts, so a restart re-applies nothing wrongly. It commits its offsets (in a Kafka
transaction, with the dead letters of records it cannot read) only after the database transaction
has committed; a failed database write is retried until it succeeds, so no update is skipped. It may
lag without harm: the scheduler never reads the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import Message
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from aiflow.config import Config
from aiflow.errors import StoreError
from aiflow.kafka import sending, topics
from aiflow.kafka.transactions import Backoff, TransactionalLoop
from aiflow.protocol.deadletter import dead_letter, decode_or_dead_letter, reason_of
from aiflow.protocol.messages import StateRecord
from aiflow.protocol.records import Record, source_of
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


def transient(exc: BaseException) -> bool:
    """True for a database error that a retry can cure: the server went away, a lock, a timeout."""
    # A StoreError (unreachable, or at another schema revision) is the database's state, not the
    # record's: waiting for the operator beats dead-lettering every record.
    return isinstance(exc, (OperationalError, InterfaceError, StoreError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


class _Stopping(Exception):
    """The service stops while the database is away: the batch is left to the next start."""


class Projector:
    """Owns the state topic: a changelog record it cannot read or apply goes to the dead-letter topic,
    in the Kafka transaction that commits its offset."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config)
        self.loop = TransactionalLoop(config, "projector", topics.name(config, topics.STATE),
                                      f"{config.topic_prefix}-projector")
        # The version of each execution the database holds, as far as this projector wrote it.
        self._versions: dict[str, int] = {}
        self._stop = threading.Event()

    def _latest(self, msgs: list[Message], dead: list[Record]) -> dict[str, tuple[StateRecord, Message]]:
        """The newest readable execution record of each execution in the batch that is not applied yet."""
        latest: dict[str, tuple[StateRecord, Message]] = {}
        for msg in msgs:
            if msg.value() is None:
                continue  # a tombstone: the execution is forgotten by Kafka, not by the database
            record = decode_or_dead_letter(msg, StateRecord.from_record, "projector", dead)
            if record is None or record.entity != "EXECUTION":
                continue
            if record.version <= self._versions.get(record.entity_id, -1):
                continue
            known = latest.get(record.entity_id)
            if known is None or record.version >= known[0].version:
                latest[record.entity_id] = (record, msg)
        return latest

    def _write(self, latest: dict[str, tuple[StateRecord, Message]], dead: list[Record]) -> None:
        """Apply the records in one database transaction. A transient failure (database down, locked)
        retries it after a back-off, skipping nothing. If the database refuses the batch for good (bad
        data), its records are applied one by one and those it refuses are dead-lettered."""
        try:
            self._retrying(lambda: self._apply(list(latest.values())))
            return
        except _Stopping:
            raise
        except Exception as exc:
            if transient(exc):
                raise  # stopping
            log.warning("projector: a batch cannot be applied (%s); applying its records one by one", reason_of(exc))
        for record, msg in latest.values():
            try:
                self._retrying(lambda record=record, msg=msg: self._apply([(record, msg)]))  # type: ignore[misc]
            except _Stopping:
                raise
            except Exception as exc:
                if transient(exc):
                    raise
                log.warning("projector: %s cannot be applied: %s", source_of(msg), reason_of(exc))
                dead.append(dead_letter(msg, f"cannot be applied: {reason_of(exc)}", "projector"))

    def _apply(self, records: list[tuple[StateRecord, Message]]) -> None:
        with self.store.session() as s:
            for record, _msg in records:
                apply_execution(s, record.data())

    def _retrying(self, write: Callable[[], None]) -> None:
        backoff = Backoff(cap=5.0)
        while True:
            try:
                write()
                return
            except Exception as exc:
                if not transient(exc):
                    raise
                if self._stop.is_set():
                    raise _Stopping() from None
                log.warning("projector: the database write failed (%s); retrying it", reason_of(exc))
                backoff.wait(self._stop)

    def step(self) -> int:
        msgs = self.loop.poll(500, 0.2)
        if not msgs:
            return 0
        dead: list[Record] = []
        latest = self._latest(msgs, dead)
        if latest:
            try:
                self._write(latest, dead)
            except _Stopping:
                self.loop.abort()  # nothing committed: the next start applies the batch
                return 0
        self.loop.begin()
        for record in dead:
            sending.produce(self.loop.producer, self.config, record)
        self.loop.commit()
        # Only now, with the database written and the offsets committed, are these versions done.
        for entity_id, (state, _msg) in latest.items():
            self._versions[entity_id] = state.version
        return len(msgs)

    def run(self, stop: threading.Event) -> None:
        """Apply the changelog until `stop` is set; a failed database write or Kafka transaction is
        retried, never skipped."""
        log.info("projector: started")
        self._stop = stop
        try:
            self.loop.run_until(stop, self.step)
        finally:
            self.loop.close()
