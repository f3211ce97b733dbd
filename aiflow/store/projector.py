"""The projector: writes the scheduler's state changelog into the SQL store, and tombstones settled
executions in the changelog once the database holds them.

Guarantee: every committed changelog record is applied at least once, in order per execution, with
idempotent upserts, so a restart re-applies nothing wrongly. It commits its offsets (in a Kafka
transaction, with the dead letters of records it cannot read and the tombstones of the settled
executions it wrote) only after the database transaction has committed; a failed database write is
retried until it succeeds, so no update is skipped. It may lag without harm: the scheduler never
reads the database.

A state record holds an execution's latest try of each task and only a few earlier ones
(`scheduler.core.TRIES_KEPT`), so the projector merges the tries of every record of an execution in
a batch before writing, and never deletes a try the record no longer holds: the database keeps every
try the changelog ever showed.

Tombstones: a settled execution (finished, no try still stopping) never changes again — the
scheduler drops it from memory and ignores later input about it — so once its final record is in
the database, the projector writes a tombstone for its key to the same partition, in the transaction
that commits the offsets, and compaction forgets the execution. A tombstone only follows a settled
record that was the last record of its key in the batch; the database, not the topic, is then the
home of the execution's history.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import Message, TopicPartition
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
from aiflow.sdk.status import TASK_ALIVE_SET, WORKFLOW_FINISHED_SET
from aiflow.store.db import Store
from aiflow.store.models import ExecutionRow, ScheduleRow, TaskExecutionRow, TriggerRow, WorkflowRow

log = logging.getLogger(__name__)


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value else None


def task_execution_id(execution_id: str, task: str, try_number: int) -> str:
    return f"{execution_id}/{task}/{try_number}"


TryKey = tuple[str, int]  # task, try number
TryFields = tuple[Any, ...]  # what a task row shows of a try, as the state body has it


def apply_execution(s: Session, body: dict[str, Any],
                    written: Mapping[TryKey, TryFields] | None = None) -> dict[TryKey, TryFields]:
    """Upsert one execution and its task tries from the scheduler's state of it. `written`: its tries as
    they were last written (by this projector, in a transaction since committed); a try unchanged since
    is not written again, so a change of one try of an execution of many tasks writes one row, not all
    of them. Returns its tries as written now."""
    workflow = s.scalar(select(WorkflowRow).where(WorkflowRow.namespace == body["namespace"],
                                                  WorkflowRow.name == body["workflow"]))
    if workflow is None:
        return {}  # deleted since: its history went with it
    row = s.get(ExecutionRow, body["id"])
    if row is None:  # new, or deleted since it was last written (its tries with it): write every try
        row = ExecutionRow(id=body["id"], workflow_id=workflow.id)
        s.add(row)
        written = None
    row.snapshot_version = body["snapshot"]["version"]
    row.status = body["status"]
    row.run_type = body["run_type"]
    row.begin_date = _time(body["create_time"])
    row.end_date = _time(body["end_time"])
    row.cause = body["cause"]
    row.message = body.get("message", "")
    tries = {(task, t["try_number"]): (t["status"], t["begin_time"] or t["queued_time"], t["end_time"], t["message"],
                                       t["cause"], t["worker"])
             for task, task_tries in body["tries"].items() for t in task_tries}
    changed = {key: fields for key, fields in tries.items() if written is None or written.get(key) != fields}
    if not changed:
        return tries
    ids = {task_execution_id(body["id"], task, number): (task, number) for task, number in changed}
    # The rows to change in one query, not one per try.
    query = select(TaskExecutionRow).where(TaskExecutionRow.execution_id == body["id"])
    if len(ids) < len(tries):
        query = query.where(TaskExecutionRow.id.in_(ids))
    known = {r.id: r for r in s.scalars(query)}
    for tid, (task, number) in ids.items():
        trow = known.get(tid)
        if trow is None:
            trow = TaskExecutionRow(id=tid, execution_id=body["id"], task_name=task, try_number=number)
            s.add(trow)
        status, begin, end, message, cause, worker = changed[(task, number)]
        trow.status = status
        trow.begin_date = _time(begin)
        trow.end_date = _time(end)
        trow.message = message
        trow.cause = cause
        trow.worker = worker
    return tries


def apply_workflow_state(s: Session, body: dict[str, Any]) -> None:
    """Show the triggers and schedules the scheduler cannot evaluate (`rule_errors` of its state of the
    workflow) as paused, with its reason. It never resumes one: resuming is the user's (ops clears the
    reason; if the rule still cannot be evaluated, the scheduler reports it again)."""
    workflow = s.scalar(select(WorkflowRow).where(WorkflowRow.namespace == body["namespace"],
                                                  WorkflowRow.name == body["workflow"]))
    errors = body.get("rule_errors") or {}
    if workflow is None or not errors:
        return
    rows: list[TriggerRow | ScheduleRow] = [
        *s.scalars(select(TriggerRow).where(TriggerRow.workflow_id == workflow.id)),
        *s.scalars(select(ScheduleRow).where(ScheduleRow.workflow_id == workflow.id))]
    for row in rows:
        reason = errors.get(f"{'trigger' if isinstance(row, TriggerRow) else 'schedule'} {row.id}")
        if reason:
            row.is_paused = True
            row.pause_reason = reason


def is_settled(body: dict[str, Any]) -> bool:
    """The execution of this state body is finished and no try of it is still stopping: nothing can
    change it any more (`scheduler.core.Execution.settled`, read from the body)."""
    if body.get("status") not in {s.value for s in WORKFLOW_FINISHED_SET}:
        return False
    alive = {s.value for s in TASK_ALIVE_SET}
    return not any(tries and tries[-1].get("status") in alive for tries in (body.get("tries") or {}).values())


def with_tries_of(body: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """`body` with the tries of an earlier body of the same execution that it no longer holds (the
    scheduler keeps only the latest try of each task and a few more), in try order."""
    tries: dict[str, list[dict[str, Any]]] = {}
    for task in {**earlier.get("tries", {}), **body.get("tries", {})}:
        merged = {t["try_number"]: t for t in earlier.get("tries", {}).get(task, [])}
        merged.update({t["try_number"]: t for t in body.get("tries", {}).get(task, [])})
        tries[task] = [merged[n] for n in sorted(merged)]
    return {**body, "tries": tries}


@dataclass
class _Latest:
    """What the projector writes of one execution in a batch: its newest record, that record's
    message, the body to write (the newest, with earlier tries merged in) and whether the message is
    the last of its key in the batch."""

    record: StateRecord
    msg: Message
    body: dict[str, Any]
    last: bool = False


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
                                      f"{config.topic_prefix}-projector", on_revoke=self._forget_written)
        # The version of each execution the database holds, as far as this projector wrote it, and its
        # tries as written (apply_execution writes only those that changed since).
        self._versions: dict[str, int] = {}
        self._written: dict[str, dict[TryKey, TryFields]] = {}
        self._just_written: dict[str, dict[TryKey, TryFields]] = {}  # by the batch's database transaction
        self._stop = threading.Event()

    def _forget_written(self, _partitions: list[TopicPartition]) -> None:
        """Partitions go to another projector, which may write their executions meanwhile: what this one
        wrote is no longer what the database holds, so the next record of each is written whole."""
        self._written.clear()

    def _latest(self, msgs: list[Message], dead: list[Record]) -> dict[str, _Latest]:
        """The newest readable execution record of each execution in the batch that is not applied yet,
        with the tries of its earlier records in the batch merged in (a try trimmed from the newest
        record still reaches the database)."""
        latest: dict[str, _Latest] = {}
        last_offset: dict[tuple[int, bytes | str | None], int] = {}
        for msg in msgs:
            last_offset[(msg.partition() or 0, msg.key())] = msg.offset() or 0
            if msg.value() is None:
                continue  # a tombstone (ours): the execution is forgotten by Kafka, not by the database
            record = decode_or_dead_letter(msg, StateRecord.from_record, "projector", dead)
            if record is None or record.entity not in ("EXECUTION", "WORKFLOW"):
                continue
            if record.version <= self._versions.get(record.entity_id, -1):
                continue
            known = latest.get(record.entity_id)
            if record.entity == "WORKFLOW":  # no tries to merge: the newest says it all
                if known is None or record.version >= known.record.version:
                    latest[record.entity_id] = _Latest(record, msg, record.data())
            elif known is None:
                latest[record.entity_id] = _Latest(record, msg, record.data())
            elif record.version >= known.record.version:
                latest[record.entity_id] = _Latest(record, msg, with_tries_of(record.data(), known.body))
            else:
                known.body = with_tries_of(known.body, record.data())
        for item in latest.values():
            # Only the last record of its key may be followed by a tombstone: a later one (which a
            # settled execution never has) would be deleted with it.
            item.last = last_offset[(item.msg.partition() or 0, item.msg.key())] == (item.msg.offset() or 0)
        return latest

    def _write(self, latest: dict[str, _Latest], dead: list[Record]) -> set[str]:
        """Apply the records in one database transaction. A transient failure (database down, locked)
        retries it after a back-off, skipping nothing. If the database refuses the batch for good (bad
        data), its records are applied one by one and those it refuses are dead-lettered. Returns the
        ids of the executions it could not write."""
        try:
            self._retrying(lambda: self._apply(list(latest.values())))
            return set()
        except _Stopping:
            raise
        except Exception as exc:
            if transient(exc):
                raise  # stopping
            log.warning("projector: a batch cannot be applied (%s); applying its records one by one", reason_of(exc))
        refused = set()
        for entity_id, item in latest.items():
            try:
                self._retrying(lambda item=item: self._apply([item]))  # type: ignore[misc]
            except _Stopping:
                raise
            except Exception as exc:
                if transient(exc):
                    raise
                log.warning("projector: %s cannot be applied: %s", source_of(item.msg), reason_of(exc))
                dead.append(dead_letter(item.msg, f"cannot be applied: {reason_of(exc)}", "projector"))
                refused.add(entity_id)
        return refused

    def _apply(self, items: list[_Latest]) -> None:
        written: dict[str, dict[TryKey, TryFields]] = {}
        with self.store.session() as s:
            for item in items:
                if item.record.entity == "WORKFLOW":
                    apply_workflow_state(s, item.body)
                else:
                    entity = item.record.entity_id
                    written[entity] = apply_execution(s, item.body, self._written.get(entity))
        self._just_written.update(written)  # the session has committed

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
        refused: set[str] = set()
        self._just_written = {}
        if latest:
            try:
                refused = self._write(latest, dead)
            except _Stopping:
                self.loop.abort()  # nothing committed: the next start applies the batch
                return 0
        settled = [(entity_id, item) for entity_id, item in latest.items()
                   if item.last and entity_id not in refused and is_settled(item.body)]
        self.loop.begin()
        for record in dead:
            sending.produce(self.loop.producer, self.config, record)
            self.loop.metrics.produced(record)
        for _entity_id, item in settled:
            sending.produce(self.loop.producer, self.config,
                            Record(topics.STATE, item.msg.key(), None, item.msg.partition()))
        self.loop.commit()
        # Only now, with the database written and the offsets committed, are these versions done.
        for entity_id, item in latest.items():
            self._versions[entity_id] = item.record.version
        self._written.update(self._just_written)
        for entity_id, _item in settled:
            # Tombstoned: no later record of it can come, so its version need not be remembered (which
            # keeps these maps as small as the set of live executions).
            self._versions.pop(entity_id, None)
            self._written.pop(entity_id, None)
        if settled:
            log.debug("projector: %d settled executions written and tombstoned", len(settled))
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
