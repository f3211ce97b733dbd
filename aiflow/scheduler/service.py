"""The scheduler loop: consumes the inbox, applies the core, produces commands, state and events.

Guarantees (see aiflow/kafka/transactions.py for the mechanism):
- Exactly-once decisions. For each batch of inbox records, the task commands, stop commands,
  status events, state-changelog records and the inbox offsets commit in one Kafka transaction.
  A scheduler killed with SIGKILL leaves its transaction to be aborted; another instance restores the
  state of the moved partitions from the state topic (read_committed) and goes on from the committed
  offsets, so no command is lost or doubled.
- State co-partitioning. The changelog record of an execution is written to the state partition with
  the number of the inbox partition it belongs to, so an instance that owns inbox partition p
  restores exactly state partition p.
- Liveness that tells an outage from a dead worker: every worker sends a beacon to every inbox
  partition each heartbeat interval. While no worker at all is heard (Kafka unreachable, partitions
  being reassigned, no worker running) heartbeat and queue timeouts wait; once workers are heard
  again every try gets a full timeout (core.on_tick's `heard_since`).
- Input read twice (a consumer group's offsets lost) changes nothing: each workflow's state records
  the last inbox offset and event position it applied (core.first_sight).
- Bad input never stops the loop: a record that cannot be decoded or applied goes to the dead-letter
  topic, in the same transaction, with the reason. The scheduler owns the inbox topic; it reads the
  state and workflows topics without owning them, so it skips what it cannot read there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from aiflow.config import Config
from aiflow.errors import AIFlowError, RecordError
from aiflow.kafka import sending, topics
from aiflow.kafka.readers import DefinitionFollower, WorkflowId, read_state
from aiflow.kafka.transactions import TransactionalLoop
from aiflow.protocol.deadletter import dead_letter, decode_or_dead_letter, reason_of
from aiflow.protocol.messages import (
    Command,
    ControlCommand,
    Event,
    InboxKind,
    InboxMessage,
    StateRecord,
    TaskCommand,
    WorkflowDefinition,
)
from aiflow.protocol.records import Record, inbox_partition, parse_source, source_of, workflow_key
from aiflow.scheduler import core
from aiflow.scheduler.workflows import WorkflowCache
from aiflow.sdk.conditions import Condition, condition_from_spec
from aiflow.sdk.expressions import Expression, parse_expression
from aiflow.sdk.status import ExecutionType, task_status_event_key
from aiflow.sdk.workflow import Workflow

log = logging.getLogger(__name__)


_Parsed = tuple[list[tuple[int, Condition]], list[tuple[int, Expression]]]  # triggers, schedules


@dataclass
class _Owned:
    execution: core.Execution
    partition: int


class Scheduler:
    """One scheduler instance: owns the executions of the inbox partitions it is assigned."""

    def __init__(self, config: Config, settings: core.Settings | None = None) -> None:
        self.config = config
        self.settings = settings or core.Settings.from_values(config.values)
        # Silence of every worker for this long is an outage, not deaths: beacons come every interval.
        self.silence_after = min(3.0 * float(config.values["worker.heartbeat_interval"]),
                                 self.settings.heartbeat_timeout / 2)
        self._last_heard: float | None = None
        self._hearing_since: float | None = None
        self._last_room: float | None = None
        self._room_since: float | None = None
        self._replayed = 0  # inbox messages of this step that had been applied before
        self.workflows = WorkflowCache(config)
        self.executions: dict[str, _Owned] = {}
        self.finished: set[str] = set()
        self.loop = TransactionalLoop(config, "scheduler", topics.name(config, topics.INBOX),
                                      f"{config.topic_prefix}-scheduler", on_assign=self._restore,
                                      on_revoke=self._forget)
        self._dirty: dict[str, _Owned] = {}
        self._deadlines: dict[str, float] = {}
        self._pending: list[Record] = []
        self.definitions = DefinitionFollower(config, "scheduler")
        self.workflow_states: dict[WorkflowId, core.WorkflowState] = {}
        self._dirty_workflows: set[WorkflowId] = set()
        self.assigned: set[int] = set()
        self._parsed: dict[tuple[WorkflowId, str, str], _Parsed] = {}

    # -- partitions ----------------------------------------------------------------------------
    def _restore(self, partitions: list[TopicPartition], fresh: bool = True) -> None:
        """Rebuild the executions of newly assigned partitions from the state topic. An entry that
        cannot be read back is passed over (the projector dead-letters it)."""
        wanted = {p.partition for p in partitions}
        restored = 0
        for (entity, entity_id), (partition, record) in read_state(self.config, wanted, "scheduler").items():
            try:
                if entity == "WORKFLOW":
                    ws = core.WorkflowState.from_dict(record.data())
                    self.workflow_states[(ws.namespace, ws.workflow)] = ws
                    continue
                if entity != "EXECUTION":
                    continue
                ex = core.Execution.from_dict(record.data())
            except (KeyError, TypeError, ValueError) as exc:
                log.error("scheduler: state of %s %s cannot be restored, passed over: %s", entity.lower(), entity_id,
                          reason_of(exc))
                continue
            if ex.settled:
                self.finished.add(entity_id)
            else:
                self.executions[entity_id] = _Owned(ex, partition)
                self._track(self.executions[entity_id])
                restored += 1
        self.assigned |= wanted
        if fresh:  # until workers are heard on the partitions it now owns, no try of them is timed out
            self._last_heard = self._hearing_since = self._last_room = self._room_since = None
        log.info("scheduler: restored %d active executions of partitions %s", restored, sorted(wanted))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        gone = {p.partition for p in partitions}
        for execution_id in [e for e, o in self.executions.items() if o.partition in gone]:
            del self.executions[execution_id]
            self._deadlines.pop(execution_id, None)
        for wid in [w for w in self.workflow_states if self._partition_of(w) in gone]:
            del self.workflow_states[wid]
        self.assigned -= gone

    def _partition_of(self, workflow: WorkflowId) -> int:
        return inbox_partition(workflow_key(*workflow), topics.partition_count(self.config, topics.INBOX))

    # -- applying inputs ----------------------------------------------------------------------
    def _workflow_of(self, ex: core.Execution) -> Workflow:
        s = ex.snapshot
        return self.workflows.get(ex.namespace, ex.workflow, s.uri, s.sha256, s.workflow_file)

    def _apply(self, m: InboxMessage, partition: int, offset: int) -> None:
        now = time.time()
        if m.kind is InboxKind.WORKER:
            self._heard(now, room=m.free_slots > 0)
            return
        wid = (m.namespace, m.workflow)
        ws = self.workflow_states.setdefault(wid, core.WorkflowState(*wid))
        source = parse_source(m.source or "") if m.kind is InboxKind.EVENT else None
        if not core.first_sight(ws, offset, source[1:] if source else None):
            log.debug("scheduler: %s for %s.%s read again; ignored", m.kind.value, *wid)
            self._replayed += 1
            self._dirty_workflows.add(wid)
            return
        self._dirty_workflows.add(wid)
        if m.kind is InboxKind.COMMAND and m.command is Command.START_EXECUTION:
            self._start_execution(m, partition, now)
        elif m.kind is InboxKind.COMMAND:
            assert m.command is not None
            owned = self._owned(m.execution_id, m)
            if owned:
                self._emit(owned, core.on_command(owned.execution, self._workflow_of(owned.execution),
                                                  m.command.value, m.task, now))
        elif m.kind is InboxKind.EVENT:
            assert m.event is not None
            event = m.event
            mine = [o for o in self.executions.values() if (o.execution.namespace, o.execution.workflow) == wid]
            if event.execution_id:  # from a task: its own execution's rules only
                mine = [o for o in mine if o.execution.id == event.execution_id]
            for owned in mine:
                self._emit(owned, core.on_event(owned.execution, self._workflow_of(owned.execution), event,
                                                m.source or "", now))
            self._triggers(wid, event, m.source or "", partition, now)
        else:  # a task status report or a heartbeat
            report = m.report
            assert report is not None
            self._heard(now)
            owned = self._owned(report.execution_id, m)
            if owned:
                self._emit(owned, core.on_report(owned.execution, self._workflow_of(owned.execution),
                                                 report.task, report.try_number, report.status,
                                                 report.message, report.worker, now))
            elif report.status == "RUNNING":  # a worker took a START of an execution that has ended
                self._pending.append(ControlCommand("KILL", report.execution_id, report.task, report.try_number,
                                                    "the execution is no longer running").to_record())

    # -- liveness -----------------------------------------------------------------------------
    def _heard(self, now: float, room: bool = False) -> None:
        """A worker was heard (with a free slot, says `room`)."""
        if self._hearing_since is None:
            if self._last_heard is not None:
                log.warning("scheduler: workers heard again after %.0f s of silence; every running try gets a "
                            "full heartbeat timeout from now", now - self._last_heard)
            self._hearing_since = self._last_heard = now
            self._track_all()
        self._last_heard = now
        if room:
            if self._room_since is None:
                self._room_since = self._last_room = now
                self._track_all()
            self._last_room = now

    def _liveness(self, now: float) -> tuple[float | None, float | None]:
        """Since when workers have been heard without a break, and since when one with a free slot has
        been (None while none is)."""
        if self._hearing_since is not None and self._last_heard is not None and \
                now - self._last_heard > self.silence_after:
            log.warning("scheduler: no worker heard for %.0f s (Kafka unreachable, or no worker running): "
                        "heartbeat and queue timeouts wait until workers are heard again", now - self._last_heard)
            self._hearing_since = None
            self._track_all()
        if self._room_since is not None and self._last_room is not None and now - self._last_room > self.silence_after:
            self._room_since = None  # every worker is full: waiting STARTs are a backlog
            self._track_all()
        return self._hearing_since, self._room_since

    def _owned(self, execution_id: str | None, m: InboxMessage) -> _Owned | None:
        owned = self.executions.get(execution_id or "")
        if owned is None:
            state = "finished" if execution_id in self.finished else "unknown"
            what = m.command.value if m.command else m.kind.value
            log.info("scheduler: %s for %s execution %s ignored", what, state, execution_id)
        return owned

    def _start_execution(self, m: InboxMessage, partition: int, now: float) -> None:
        args = m.args
        execution_id = str(m.execution_id)
        if execution_id in self.executions or execution_id in self.finished:
            return  # a duplicate command: the execution exists already
        wid = (m.namespace, m.workflow)
        definition = self.definitions.definitions.get(wid)
        if definition is not None and not definition.enabled:
            log.info("scheduler: %s.%s is disabled: start of %s refused", *wid, execution_id)
            return
        snapshot = core.Snapshot(int(args["snapshot_version"]), args["snapshot_uri"], args["snapshot_sha256"],
                                 args["workflow_file"])
        self._create(wid, execution_id, snapshot, ExecutionType(args.get("run_type", "MANUAL")),
                     args.get("cause", "manual start"), partition, now)

    def _create(self, wid: WorkflowId, execution_id: str, snapshot: core.Snapshot, run_type: ExecutionType,
                cause: str, partition: int, now: float) -> None:
        workflow = self.workflows.get(wid[0], wid[1], snapshot.uri, snapshot.sha256, snapshot.workflow_file)
        ex, outputs = core.start_execution(workflow, execution_id, snapshot, run_type, cause, now)
        owned = _Owned(ex, partition)
        self.executions[execution_id] = owned
        self._emit(owned, outputs)

    # -- triggers and schedules ----------------------------------------------------------------
    def _parsed_definition(self, wid: WorkflowId, definition: WorkflowDefinition) -> _Parsed:
        key = (wid, definition.triggers, definition.schedules)
        if key not in self._parsed:
            triggers = [(t["id"], condition_from_spec(t["condition"])) for t in json.loads(definition.triggers)
                        if not t.get("paused")]
            schedules = [(sc["id"], parse_expression(sc["expression"])) for sc in json.loads(definition.schedules)
                         if not sc.get("paused")]
            self._parsed[key] = (triggers, schedules)
        return self._parsed[key]

    def _start_latest(self, wid: WorkflowId, definition: WorkflowDefinition, run_type: ExecutionType, cause: str,
                      partition: int, now: float) -> None:
        snapshot = core.Snapshot(definition.version, definition.snapshot_uri, definition.snapshot_sha256,
                                 definition.workflow_file)
        self._create(wid, uuid.uuid4().hex[:12], snapshot, run_type, cause, partition, now)

    def _triggers(self, wid: WorkflowId, event: Event, source: str, partition: int, now: float) -> None:
        definition = self.definitions.definitions.get(wid)
        if definition is None or not definition.enabled:
            return
        triggers, _ = self._parsed_definition(wid, definition)
        ws = self.workflow_states.setdefault(wid, core.WorkflowState(*wid))
        fired = core.on_trigger_event(ws, triggers, event, now)
        self._dirty_workflows.add(wid)
        for trigger_id in fired:
            self._start_latest(wid, definition, ExecutionType.EVENT,
                               f"trigger {trigger_id} on event {event.key!r} at {source}", partition, now)

    def _schedules(self, now: float) -> None:
        for wid, definition in list(self.definitions.definitions.items()):
            if not definition.enabled:
                continue
            partition = self._partition_of(wid)
            if partition not in self.assigned:
                continue
            _, schedules = self._parsed_definition(wid, definition)
            ws = self.workflow_states.setdefault(wid, core.WorkflowState(*wid))
            before = dict(ws.schedule_next)
            for schedule_id in core.due_schedules(ws, schedules, now):
                expression = dict(schedules)[schedule_id]
                self._start_latest(wid, definition, ExecutionType.PERIODIC, f"schedule {schedule_id} ({expression})",
                                   partition, now)
            if ws.schedule_next != before:
                self._dirty_workflows.add(wid)

    def _schedules_due(self, now: float) -> bool:
        for wid, ws in self.workflow_states.items():
            if any(t <= now for t in ws.schedule_next.values()) and self._partition_of(wid) in self.assigned:
                return True
        return any(d.enabled and wid not in self.workflow_states and self._parsed_definition(wid, d)[1]
                   and self._partition_of(wid) in self.assigned for wid, d in self.definitions.definitions.items())

    # -- outputs ------------------------------------------------------------------------------
    def _emit(self, owned: _Owned, outputs: list[core.Output]) -> None:
        ex = owned.execution
        self._dirty[ex.id] = owned
        for out in outputs:
            if isinstance(out, core.StartTry):
                op = self._workflow_of(ex).tasks.get(out.task)
                s = ex.snapshot
                self._pending.append(TaskCommand(ex.namespace, ex.workflow, ex.id, out.task, out.try_number, s.uri,
                                                 s.sha256, s.workflow_file, op.timeout if op else None).to_record())
            elif isinstance(out, core.StopTry):
                self._pending.append(ControlCommand("KILL" if out.kill else "STOP", out.execution_id, out.task,
                                                    out.try_number, out.reason).to_record())
            elif isinstance(out, core.StatusChanged):
                self._pending.append(self._status_event(ex, out))

    def _status_event(self, ex: core.Execution, out: core.StatusChanged) -> Record:
        event = Event(key=task_status_event_key(ex.namespace, ex.workflow, out.task), value=out.status,
                      namespace=ex.namespace, sender="aiflow-scheduler", workflow=ex.workflow,
                      execution_id=ex.id, task=out.task, try_number=out.try_number)
        return event.to_record()

    def _track(self, owned: _Owned) -> None:
        """Remember when the execution next needs a tick, so finding due ones is a scan of floats."""
        try:
            deadline = core.next_deadline(owned.execution, self._workflow_of(owned.execution), self.settings,
                                          self._hearing_since, self._room_since)
        except AIFlowError:
            deadline = None
        if deadline is None:
            self._deadlines.pop(owned.execution.id, None)
        else:
            self._deadlines[owned.execution.id] = deadline

    def _track_all(self) -> None:
        for owned in self.executions.values():
            self._track(owned)

    def _flush_state(self) -> None:
        for owned in self._dirty.values():
            ex = owned.execution
            core.trim_history(ex)
            ex.version += 1
            self._pending.append(StateRecord("EXECUTION", ex.id, ex.namespace, ex.workflow, ex.version,
                                             json.dumps(ex.to_dict())).to_record(owned.partition))
            if ex.settled:
                self.executions.pop(ex.id, None)
                self._deadlines.pop(ex.id, None)
                self.finished.add(ex.id)
            else:
                self._track(owned)
        self._dirty.clear()
        for wid in self._dirty_workflows:
            ws = self.workflow_states.get(wid)
            if ws is None:
                continue
            ws.version += 1
            self._pending.append(StateRecord("WORKFLOW", workflow_key(*wid), ws.namespace, ws.workflow, ws.version,
                                             json.dumps(ws.to_dict())).to_record(self._partition_of(wid)))
        self._dirty_workflows.clear()

    def _produce(self) -> None:
        for record in self._pending:
            try:
                record.check_size()
            except RecordError as exc:
                # Only a state record can grow this large, and the input at hand is not to blame: the
                # execution goes on in memory, its changelog keeps the last version that fit.
                log.error("scheduler: %s record %s not written: %s", record.role, record.key, exc)
                continue
            sending.produce(self.loop.producer, self.config, record)
        self._pending.clear()

    # -- the loop -----------------------------------------------------------------------------
    def _due(self, now: float) -> list[_Owned]:
        return [self.executions[e] for e, deadline in self._deadlines.items()
                if deadline <= now and e in self.executions]

    def step(self) -> int:
        """One batch: poll, apply, tick timers, produce, commit. Returns the number of inputs."""
        self.definitions.poll()
        msgs = self.loop.poll()
        now = time.time()
        heard_since, room_since = self._liveness(now)
        due = self._due(now)
        schedules_due = self._schedules_due(now)
        if not msgs and not due and not schedules_due:
            return 0
        self.loop.begin()
        for msg in msgs:
            m = decode_or_dead_letter(msg, InboxMessage.from_record, "scheduler", self._pending)
            if m is None:
                continue
            try:
                self._apply(m, msg.partition() or 0, msg.offset() or 0)
            except Exception as exc:  # a record that cannot be applied, or a bug on one input, must not stop the loop
                log.exception("scheduler: inbox record %s sent to the dead-letter topic", source_of(msg))
                self._pending.append(dead_letter(msg, reason_of(exc), "scheduler"))
        for owned in due:
            if owned.execution.id in self.executions:
                self._emit(owned, core.on_tick(owned.execution, self._workflow_of(owned.execution), now,
                                               self.settings, heard_since, room_since))
        if schedules_due:
            self._schedules(now)
        if self._replayed:
            log.info("scheduler: %d inbox messages read again (offsets lost?) were ignored: applied before",
                     self._replayed)
            self._replayed = 0
        self._flush_state()
        self._produce()
        self.loop.commit()
        return len(msgs)

    def run(self, stop: threading.Event) -> None:
        self.definitions.catch_up(stop)
        log.info("scheduler: started")
        try:
            self.loop.run_until(stop, self.step, self._recover)
        finally:
            self.loop.close()
            self.definitions.close()
            log.info("scheduler: stopped")

    def _recover(self, abort: bool) -> None:
        """Forget what the failed step did: abort, rewind, and restore state from the changelog."""
        self._pending.clear()
        self._replayed = 0
        self._dirty.clear()
        self._dirty_workflows.clear()
        self.loop.abort()  # aborts what is open (if anything) and always rewinds to the committed offsets
        assignment = self.loop.consumer.assignment()
        self.executions.clear()
        self._deadlines.clear()
        self.finished.clear()
        self.workflow_states.clear()
        self.assigned.clear()
        if assignment:
            self._restore(assignment, fresh=False)

