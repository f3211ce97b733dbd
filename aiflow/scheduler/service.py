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
- Placement: a START goes to the tasks topic of its task's queue (`<prefix>.tasks` for the default
  queue, `<prefix>.tasks.<queue>` for another, created here before the first START to it). Beacons say
  which queues their worker serves; a queue whose workers are not heard counts no queue timeout, and
  its QUEUED tries say that they wait for one (core.Queues).
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
from typing import Any

from confluent_kafka import TopicPartition

from aiflow import metrics
from aiflow.config import Config
from aiflow.errors import AIFlowError, KafkaUnavailable, RecordError, WorkflowFileError
from aiflow.housekeeping import sweep_snapshot_cache
from aiflow.kafka import sending, topics
from aiflow.kafka.readers import SETTLED_HEADER, DefinitionFollower, WorkflowId, read_state
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
from aiflow.protocol.records import Record, inbox_partition, parse_source, record_time, source_of, workflow_key
from aiflow.scheduler import core
from aiflow.scheduler.sandbox import SnapshotHost
from aiflow.scheduler.workflows import WorkflowCache
from aiflow.sdk.conditions import Condition, condition_from_spec
from aiflow.sdk.expressions import Expression, parse_expression
from aiflow.sdk.status import ExecutionType, task_status_event_key
from aiflow.sdk.workflow import Workflow

log = logging.getLogger(__name__)


_Parsed = tuple[list[tuple[int, Condition]], list[tuple[int, Expression]]]  # triggers, schedules


def _names_a_class(spec: dict[str, Any]) -> bool:
    """Whether a condition spec, or one nested in it, names a class of the user's."""
    return spec.get("type") == "class" or any(_names_a_class(c) for c in spec.get("conditions", []))


def _snapshot_of(m: InboxMessage) -> core.Snapshot:
    """The snapshot a START_EXECUTION command names."""
    args = m.args
    return core.Snapshot(int(args["snapshot_version"]), args["snapshot_uri"], args["snapshot_sha256"],
                         args["workflow_file"])


@dataclass
class _Owned:
    execution: core.Execution
    partition: int


# How many ids of finished executions a scheduler remembers. They are there to ignore what still comes
# for an execution once it is settled and gone from memory: a duplicate START_EXECUTION command with
# its id (which would otherwise start it again) and late reports (logged as about a finished
# execution; a late RUNNING is killed either way). Input read twice is ignored by core.first_sight
# without them, so only the recent ones matter.
FINISHED_KEPT = 100_000


class _RecentIds:
    """A set of at most `limit` ids that forgets the oldest added first."""

    def __init__(self, limit: int = FINISHED_KEPT) -> None:
        self.limit = limit
        self._ids: dict[str, None] = {}  # insertion-ordered

    def add(self, item: str) -> None:
        self._ids.pop(item, None)
        self._ids[item] = None
        if len(self._ids) > self.limit:
            del self._ids[next(iter(self._ids))]

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def clear(self) -> None:
        self._ids.clear()

    def discard(self, item: str) -> None:
        self._ids.pop(item, None)


# How long a step's poll waits for input (it returns as soon as some arrives): short while something here is
# timed (an execution's retry, timeout, heartbeat check or periodic tick, a workflow's schedule), so it is
# handled within that; longer when nothing is, so an idle scheduler wakes twice a second instead of 20 times.
BUSY_POLL_SECONDS = 0.05
IDLE_POLL_SECONDS = 0.5


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
        # Per queue, from the beacons: when a worker serving it was last heard, and since when (and when
        # last) one with a free slot has been, without a break.
        self._queue_heard: dict[str, float] = {}
        self._queue_room_since: dict[str, float] = {}
        self._queue_last_room: dict[str, float] = {}
        self._queues = core.Queues(known=False)
        self._replayed = 0  # inbox messages of this step that had been applied before
        self.workflows = WorkflowCache(config)
        self.executions: dict[str, _Owned] = {}
        self.finished = _RecentIds()  # settled executions no longer in memory (the most recent ones)
        self.loop = TransactionalLoop(config, "scheduler", topics.name(config, topics.INBOX),
                                      f"{config.topic_prefix}-scheduler", on_assign=self._restore,
                                      on_revoke=self._forget)
        self._dirty: dict[str, _Owned] = {}
        self._deadlines: dict[str, float] = {}
        self._pending: list[Record] = []
        self.definitions = DefinitionFollower(config, "scheduler", self._on_definition)
        self.workflow_states: dict[WorkflowId, core.WorkflowState] = {}
        self._dirty_workflows: set[WorkflowId] = set()
        self.assigned: set[int] = set()
        self._parsed: dict[tuple[WorkflowId, str, str], _Parsed] = {}
        self._parse_errors: dict[tuple[WorkflowId, str, str], dict[str, str]] = {}
        self._settled_now: list[str] = []  # ids the current step settled (undone if it rolls back)
        self._scheduled_key: tuple[int, frozenset[int]] | None = None
        self._scheduled_list: list[tuple[WorkflowId, list[tuple[int, Expression]]]] = []
        self._trigger_hosts: dict[WorkflowId, SnapshotHost] = {}  # processes of trigger conditions of the user's
        self._next_snapshot_sweep = time.monotonic() + 60

    # -- partitions ----------------------------------------------------------------------------
    @metrics.STATE_RESTORE_SECONDS.time()
    def _restore(self, partitions: list[TopicPartition], fresh: bool = True,
                 heartbeats: dict[tuple[str, str, int], float] | None = None) -> None:
        """Rebuild the executions of newly assigned partitions from the state topic. An entry that
        cannot be read back is passed over (the projector dead-letters it). Settled executions are
        not kept, nor even decoded: their ids are remembered in `finished`.

        Heartbeats are not written to the state topic, so a restored try's `last_heartbeat` is the one
        of its last status change. `fresh` (a new assignment) therefore starts with no worker heard:
        no silence counts until one is, and then every try gets a full heartbeat timeout
        (core.next_deadline counts from the later of the two). After a failed step (`_recover`) the
        liveness goes on, and `heartbeats` — (execution, task, try) -> the last one heard, kept in
        memory — puts back what the state topic does not have."""
        wanted = {p.partition for p in partitions}
        if fresh:  # until workers are heard on the partitions it now owns, no try of them is timed out
            self._last_heard = self._hearing_since = self._last_room = self._room_since = None
            self._queue_heard.clear()
            self._queue_room_since.clear()
            self._queue_last_room.clear()
            self._queues = core.Queues(known=False)
        restored = 0
        settled: dict[str, int] = {}
        for (entity, entity_id), (partition, record) in read_state(self.config, wanted, "scheduler",
                                                                   settled=settled).items():
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
            if ex.settled:  # written before settled records were marked
                self.finished.add(entity_id)
                continue
            for task, tries in ex.tries.items():
                heard = (heartbeats or {}).get((ex.id, task, tries[-1].try_number)) if tries else None
                if heard is not None and heard > (tries[-1].last_heartbeat or 0.0):
                    tries[-1].last_heartbeat = heard
            self.executions[entity_id] = _Owned(ex, partition)
            self._track(self.executions[entity_id])
            restored += 1
        for entity_id in settled:
            self.finished.add(entity_id)
        self.assigned |= wanted
        log.info("scheduler: restored %d active executions of partitions %s (%d settled ones passed over)", restored,
                 sorted(wanted), len(settled))

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
        """The execution's workflow (WorkflowFileError if its snapshot cannot be loaded)."""
        s = ex.snapshot
        return self.workflows.get(ex.namespace, ex.workflow, s.uri, s.sha256, s.workflow_file)

    def _workflow_for(self, owned: _Owned, now: float) -> Workflow:
        """The workflow to apply an input with. When the snapshot cannot be loaded (any more: a library
        gone since the execution started), the execution fails with the reason first, its tries are
        stopped, and an empty stand-in lets their reports settle it."""
        try:
            return self._workflow_of(owned.execution)
        except WorkflowFileError as exc:
            if not owned.execution.finished:
                log.error("scheduler: execution %s fails: its workflow cannot be loaded any more: %s",
                          owned.execution.id, exc)
                self._emit(owned, core.fail_execution(owned.execution,
                                                      f"its workflow cannot be loaded any more: {exc}", now))
            return core.stand_in(owned.execution)

    def _apply(self, m: InboxMessage, partition: int, offset: int, written_at: float | None = None) -> None:
        """Apply one inbox record; `written_at`: the record's timestamp (a report's: when its worker wrote it)."""
        now = time.time()
        if m.kind is InboxKind.WORKER:
            self._heard(now, room=m.free_slots > 0, queues=m.queues)
            return
        wid = (m.namespace, m.workflow)
        # A heartbeat changes liveness only (in memory), so it writes no state, not even the workflow's
        # position: one read again after lost offsets refreshes a try's liveness once more, no harm.
        heartbeat = m.kind is InboxKind.HEARTBEAT
        if not heartbeat:
            ws = self.workflow_states.setdefault(wid, core.WorkflowState(*wid))
            source = parse_source(m.source or "") if m.kind is InboxKind.EVENT else None
            if not core.first_sight(ws, offset, source[1:] if source else None):
                log.debug("scheduler: %s for %s.%s read again; ignored", m.kind.value, *wid)
                self._replayed += 1
                self._dirty_workflows.add(wid)
                return
            self._dirty_workflows.add(wid)
        self.loop.metrics.applying(m)  # counted once: not when read again after lost offsets
        if m.kind is InboxKind.COMMAND and m.command is Command.START_EXECUTION:
            self._start_execution(m, partition, now)
        elif m.kind is InboxKind.COMMAND:
            assert m.command is not None
            owned = self._owned(m.execution_id, m)
            if owned:
                self._emit(owned, core.on_command(owned.execution, self._workflow_for(owned, now),
                                                  m.command.value, m.task, now, self._rules_on(wid)))
        elif m.kind is InboxKind.EVENT:
            assert m.event is not None
            event = m.event
            mine = [o for o in self.executions.values() if (o.execution.namespace, o.execution.workflow) == wid]
            if event.execution_id:  # from a task: its own execution's rules only
                mine = [o for o in mine if o.execution.id == event.execution_id]
            if not self._rules_on(wid):  # disabled: its executions' rules listen to nothing until it is enabled
                mine = []
            for owned in mine:
                self._emit(owned, core.on_event(owned.execution, self._workflow_for(owned, now), event,
                                                m.source or "", now))
            self._triggers(wid, event, m.source or "", partition, now)
        else:  # a task status report or a heartbeat
            report = m.report
            assert report is not None
            self._heard(now)
            owned = self._owned(report.execution_id, m)
            if owned:
                outputs = core.on_report(owned.execution, self._workflow_for(owned, now), report.task,
                                         report.try_number, report.status, report.message, report.worker, now,
                                         self._rules_on(wid), reported_at=written_at)
                if report.status is None and not outputs:
                    # A heartbeat: liveness, kept in memory only (no state record; see _restore), with
                    # the execution's next deadline moved on.
                    self._track(owned)
                else:
                    self._emit(owned, outputs)
            elif report.status == "RUNNING":  # a worker took a START of an execution that has ended
                self._pending.append(ControlCommand("KILL", report.execution_id, report.task, report.try_number,
                                                    "the execution is no longer running").to_record())

    def _rules_on(self, wid: WorkflowId) -> bool:
        """Whether the rules of the workflow's executions are evaluated: not while it is disabled (as in the
        original, whose disable took the workflow's rules out of its index). A workflow deleted since
        its execution started keeps its rules."""
        definition = self.definitions.definitions.get(wid)
        return definition is None or definition.enabled

    # -- liveness -----------------------------------------------------------------------------
    def _heard(self, now: float, room: bool = False, queues: tuple[str, ...] = ()) -> None:
        """A worker was heard (with a free slot, says `room`; a beacon says which `queues` it serves)."""
        for queue in queues:
            new = queue not in self._queue_heard or (room and queue not in self._queue_room_since)
            self._queue_heard[queue] = now
            if room:
                self._queue_room_since.setdefault(queue, now)
                self._queue_last_room[queue] = now
            if new:
                self._queues = self._queue_view(now)
                self._track_all()
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
        for queue, last in list(self._queue_heard.items()):
            if now - last > self.silence_after:
                log.warning("scheduler: no worker of queue %r heard for %.0f s: its tries wait for one", queue,
                            now - last)
                del self._queue_heard[queue]
        for queue, last in list(self._queue_last_room.items()):
            if now - last > self.silence_after or queue not in self._queue_heard:
                del self._queue_last_room[queue]
                self._queue_room_since.pop(queue, None)
        queues = self._queue_view(now)
        if queues != self._queues:
            self._queues = queues
            self._track_all()
        return self._hearing_since, self._room_since

    def _queue_view(self, now: float) -> core.Queues:
        """The queues with a live worker, and whether a queue without one is known to have none: only once
        workers have been heard for a whole beacon window, so a scheduler that just took its partitions
        (or heard Kafka again) does not take beacons still on their way for absent workers."""
        known = self._hearing_since is not None and now - self._hearing_since >= self.silence_after
        return core.Queues({q: self._queue_room_since.get(q) for q in sorted(self._queue_heard)}, known)

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
        snapshot = _snapshot_of(m)
        if not self.definitions.announced(wid, snapshot.uri, snapshot.sha256, snapshot.workflow_file, snapshot.version):
            # Only what the workflows topic announced runs: a START naming any other snapshot (a record
            # written to the inbox by hand) fails, and nothing of it is fetched or loaded.
            reason = (f"snapshot version {snapshot.version} ({snapshot.sha256[:12]}) is not a snapshot the workflows "
                      f"topic announced for {wid[0]}.{wid[1]}: refusing to run it")
            log.warning("scheduler: start of %s refused: %s", execution_id, reason)
            ex = core.unloadable_execution(*wid, execution_id, snapshot, ExecutionType(args.get("run_type", "MANUAL")),
                                           args.get("cause", "manual start"), reason, now)
            self.executions[execution_id] = owned = _Owned(ex, partition)
            self._emit(owned, [])
            return
        self._create(wid, execution_id, snapshot, ExecutionType(args.get("run_type", "MANUAL")),
                     args.get("cause", "manual start"), partition, now)

    def _create(self, wid: WorkflowId, execution_id: str, snapshot: core.Snapshot, run_type: ExecutionType,
                cause: str, partition: int, now: float) -> None:
        try:
            workflow = self.workflows.get(wid[0], wid[1], snapshot.uri, snapshot.sha256, snapshot.workflow_file)
        except WorkflowFileError as exc:  # it loops, exits or raises at import, or its snapshot is bad
            ex = core.unloadable_execution(*wid, execution_id, snapshot, run_type, cause,
                                           f"the workflow file cannot be loaded: {exc}", now)
            outputs: list[core.Output] = []
        else:
            ex, outputs = core.start_execution(workflow, execution_id, snapshot, run_type, cause, now)
        owned = _Owned(ex, partition)
        self.executions[execution_id] = owned
        self._emit(owned, outputs)

    # -- triggers and schedules ----------------------------------------------------------------
    def _parsed_definition(self, wid: WorkflowId, definition: WorkflowDefinition) -> _Parsed:
        """The active triggers and schedules of the definition, parsed once per version of them. One that
        cannot be parsed (a condition class missing on this host, say) is left out and recorded, with its
        reason, in the workflow's state: it shows as paused until the definition changes."""
        key = (wid, definition.triggers, definition.schedules)
        fresh = key not in self._parsed
        if fresh:
            for stale in [k for k in self._parsed if k[0] == wid]:  # an earlier version of them
                del self._parsed[stale]
                self._parse_errors.pop(stale, None)
            errors: dict[str, str] = {}
            triggers = self._parsed_triggers(wid, [t for t in json.loads(definition.triggers) if not t.get("paused")],
                                             errors)
            schedules: list[tuple[int, Expression]] = []
            for sc in json.loads(definition.schedules):
                if not sc.get("paused"):
                    try:
                        schedules.append((sc["id"], parse_expression(sc["expression"])))
                    except Exception as exc:
                        errors[f"schedule {sc['id']}"] = reason_of(exc)
            for what, reason in errors.items():
                log.error("scheduler: %s of %s.%s cannot be evaluated; paused: %s", what, *wid, reason)
            self._parsed[key] = (triggers, schedules)
            self._parse_errors[key] = errors
        errors = self._parse_errors[key]
        if self._partition_of(wid) in self.assigned:  # the owner records them, in the workflow's state
            ws = self.workflow_states.get(wid)
            # Recorded again for a new definition (a rule paused and resumed by hand, say), so it shows again.
            if (ws.rule_errors if ws else {}) != errors or (fresh and errors):
                ws = ws or self.workflow_states.setdefault(wid, core.WorkflowState(*wid))
                ws.rule_errors = dict(errors)
                self._dirty_workflows.add(wid)
        return self._parsed[key]

    def _parsed_triggers(self, wid: WorkflowId, active: list[dict[str, Any]],
                         errors: dict[str, str]) -> list[tuple[int, Condition]]:
        """The triggers' conditions: built-in ones here, those naming a class of the user's rebuilt and
        evaluated in a process of their own (never imported here). Those that cannot be go to `errors`."""
        triggers: list[tuple[int, Condition]] = []
        hosted = [t for t in active if _names_a_class(t["condition"])]
        for t in active:
            if t not in hosted:
                try:
                    triggers.append((t["id"], condition_from_spec(t["condition"])))
                except Exception as exc:  # junk in a definition
                    errors[f"trigger {t['id']}"] = reason_of(exc)
        old = self._trigger_hosts.pop(wid, None)
        if old is not None:
            old.close()
        if hosted:
            host = SnapshotHost.for_conditions([t["condition"] for t in hosted], *wid, **self.workflows.limits)
            try:
                conditions, failed = host.conditions(host.load())
            except WorkflowFileError as exc:
                errors.update({f"trigger {t['id']}": str(exc) for t in hosted})
            else:
                self._trigger_hosts[wid] = host
                for index, (t, condition) in enumerate(zip(hosted, conditions, strict=True)):
                    if condition is None:
                        errors[f"trigger {t['id']}"] = failed.get(index, "its condition cannot be rebuilt")
                    else:
                        triggers.append((t["id"], condition))
        return sorted(triggers, key=lambda t: t[0])

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

    def _schedules(self, due: list[WorkflowId], now: float) -> None:
        for wid in due:
            definition = self.definitions.definitions.get(wid)
            if definition is None or not definition.enabled:
                continue
            partition = self._partition_of(wid)
            _, schedules = self._parsed_definition(wid, definition)
            ws = self.workflow_states.setdefault(wid, core.WorkflowState(*wid))
            before = dict(ws.schedule_next)
            for schedule_id in core.due_schedules(ws, schedules, now):
                expression = dict(schedules)[schedule_id]
                self._start_latest(wid, definition, ExecutionType.PERIODIC, f"schedule {schedule_id} ({expression})",
                                   partition, now)
            if ws.schedule_next != before:
                self._dirty_workflows.add(wid)

    def _scheduled(self) -> list[tuple[WorkflowId, list[tuple[int, Expression]]]]:
        """The owned, enabled workflows with active schedules, and those schedules: worked out again
        only when a definition or the partitions owned change, not on every step."""
        key = (self.definitions.changes, frozenset(self.assigned))
        if key != self._scheduled_key:
            found = []
            for wid, definition in self.definitions.definitions.items():
                if definition.enabled and self._partition_of(wid) in self.assigned:
                    _, schedules = self._parsed_definition(wid, definition)
                    if schedules:
                        found.append((wid, schedules))
            self._scheduled_key, self._scheduled_list = key, found
        return self._scheduled_list

    def _schedules_due(self, now: float) -> list[WorkflowId]:
        """The owned workflows with a schedule due, or without a next tick yet."""
        due = []
        for wid, schedules in self._scheduled():
            ws = self.workflow_states.get(wid)
            if any(ws is None or ws.schedule_next.get(str(i), 0.0) <= now for i, _ in schedules):
                due.append(wid)
        return due

    # -- outputs ------------------------------------------------------------------------------
    def _emit(self, owned: _Owned, outputs: list[core.Output]) -> None:
        ex = owned.execution
        self._dirty[ex.id] = owned
        self.loop.metrics.outputs(outputs)
        for out in outputs:
            if isinstance(out, core.StartTry):
                op = self._workflow_of(ex).tasks.get(out.task)
                s = ex.snapshot
                # Its queue's topic exists before the START is produced (usually created ahead, in _load_ahead).
                topics.ensure_queue_topics(self.config, [out.queue])
                self._pending.append(TaskCommand(ex.namespace, ex.workflow, ex.id, out.task, out.try_number, s.uri,
                                                 s.sha256, s.workflow_file, op.timeout if op else None,
                                                 queue=out.queue).to_record())
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
                                          self._hearing_since, self._room_since, self._queues)
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
        """One state record per changed execution and workflow. An execution's record holds each task's
        latest try and a few earlier ones (core.trim_history), so it stays bounded however long the
        execution runs; a settled one is marked (SETTLED_HEADER) so a restore need not decode it, and
        the projector tombstones it once the database holds it."""
        for owned in self._dirty.values():
            ex = owned.execution
            core.trim_history(ex)
            ex.version += 1
            record = StateRecord("EXECUTION", ex.id, ex.namespace, ex.workflow, ex.version,
                                 json.dumps(ex.to_dict())).to_record(owned.partition)
            if ex.settled:
                record = Record(record.role, record.key, record.value, record.partition, ((SETTLED_HEADER, b"1"),))
            self._pending.append(record)
            if ex.settled:
                self.executions.pop(ex.id, None)
                self._deadlines.pop(ex.id, None)
                self.finished.add(ex.id)
                self._settled_now.append(ex.id)
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
            self.loop.metrics.produced(record)
        self._pending.clear()

    # -- the loop -----------------------------------------------------------------------------
    def _due(self, now: float) -> list[_Owned]:
        return [self.executions[e] for e, deadline in self._deadlines.items()
                if deadline <= now and e in self.executions]

    def _sweep_snapshots(self) -> None:
        """Every 5 minutes: forget loaded workflows that no execution here runs and that are no owned
        workflow's latest (their processes end), then remove unpacked snapshots no workflow here uses
        and nobody touched for `scheduler.snapshot_cache_retention` (they are fetched again if needed)."""
        now = time.monotonic()
        if now < self._next_snapshot_sweep:
            return
        self._next_snapshot_sweep = now + 300
        keep = {(o.execution.snapshot.sha256, o.execution.namespace, o.execution.workflow)
                for o in self.executions.values()}
        keep |= {(d.snapshot_sha256, *wid) for wid, d in self.definitions.definitions.items()
                 if self._partition_of(wid) in self.assigned}
        self.workflows.evict(keep)
        try:
            removed = sweep_snapshot_cache(self.workflows.root,
                                           float(self.config.values["scheduler.snapshot_cache_retention"]),
                                           self.workflows.in_use)
        except OSError as exc:
            log.warning("scheduler: could not clean %s: %s", self.workflows.root, exc)
            return
        if removed:
            log.info("scheduler: removed %d unpacked snapshots unused for the retention: %s", len(removed),
                     ", ".join(p.name[:12] for p in removed))

    def step(self) -> int:
        """One batch: poll, apply, tick timers, produce, commit. Returns the number of inputs."""
        self._sweep_snapshots()
        self.definitions.poll()
        timed = bool(self._deadlines or self._scheduled_list)
        msgs = self.loop.poll(timeout=BUSY_POLL_SECONDS if timed else IDLE_POLL_SECONDS)
        now = time.time()
        heard_since, room_since = self._liveness(now)
        due = self._due(now)
        schedules_due = self._schedules_due(now)
        if not msgs and not due and not schedules_due:
            return 0
        # Decoded (dead letters wait in _pending) and user code loaded before the transaction opens: a
        # workflow file may take up to workflows.load_timeout, longer than a transaction may stay open.
        decoded = [(msg, decode_or_dead_letter(msg, InboxMessage.from_record, "scheduler", self._pending))
                   for msg in msgs]
        self._load_ahead([m for _, m in decoded if m is not None], schedules_due)
        self.loop.begin()
        for msg, m in decoded:
            if m is None:
                continue
            try:
                written = record_time(msg)
                self._apply(m, msg.partition() or 0, msg.offset() or 0,
                            None if written is None else written.timestamp())
            except Exception as exc:  # a record that cannot be applied, or a bug on one input, must not stop the loop
                log.exception("scheduler: inbox record %s sent to the dead-letter topic", source_of(msg))
                self._pending.append(dead_letter(msg, reason_of(exc), "scheduler"))
        for owned in due:
            if owned.execution.id in self.executions:
                ex = owned.execution
                self._emit(owned, core.on_tick(ex, self._workflow_for(owned, now), now, self.settings, heard_since,
                                               room_since, self._rules_on((ex.namespace, ex.workflow)),
                                               self._queues))
        if schedules_due:
            self._schedules(schedules_due, now)
        if self._replayed:
            log.info("scheduler: %d inbox messages read again (offsets lost?) were ignored: applied before",
                     self._replayed)
            self._replayed = 0
        self._flush_state()
        self._produce()
        self.loop.commit()
        self._settled_now.clear()
        return len(msgs)

    def _load_ahead(self, inputs: list[InboxMessage], schedules_due: list[WorkflowId]) -> None:
        """Load the workflows this batch may need, and parse the triggers it may evaluate, before the
        transaction opens. What cannot be loaded is remembered with its reason for the step to use."""
        self.workflows.revive()
        for host in self._trigger_hosts.values():
            host.revive()
        for m in inputs:
            wid = (m.namespace, m.workflow)
            if m.kind is InboxKind.COMMAND and m.command is Command.START_EXECUTION:
                try:
                    snapshot = _snapshot_of(m)
                except (KeyError, ValueError):
                    continue  # the step dead-letters it
                ref = (snapshot.uri, snapshot.sha256, snapshot.workflow_file, snapshot.version)
                # Published just before the START, it may not have been read yet. The START is refused
                # only once the topic was read to its end; until then the step is retried.
                if not self.definitions.announced(wid, *ref) and not self.definitions.read_to_end():
                    raise KafkaUnavailable("the workflows topic could not be read to its end to check a START")
                if self.definitions.announced(wid, *ref):
                    self.workflows.load(*wid, snapshot.uri, snapshot.sha256, snapshot.workflow_file)
                    self._create_queue_topics(wid, snapshot.uri, snapshot.sha256, snapshot.workflow_file)
            elif m.kind is InboxKind.EVENT:
                self._load_latest(wid)
        for wid in schedules_due:
            self._load_latest(wid)

    def _on_definition(self, wid: WorkflowId, definition: WorkflowDefinition | None) -> None:
        """A new version of a workflow this scheduler owns, uploaded while it runs: load it on the
        loader thread now, so its first START need not wait for its file to load."""
        if (definition is not None and definition.enabled and self.definitions.caught_up
                and self._partition_of(wid) in self.assigned):
            self.workflows.load_in_background(*wid, definition.snapshot_uri, definition.snapshot_sha256,
                                              definition.workflow_file)

    def _load_latest(self, wid: WorkflowId) -> None:
        """Parse the workflow's triggers and schedules; load its latest snapshot if it has any."""
        definition = self.definitions.definitions.get(wid)
        if definition is None or not definition.enabled:
            return
        triggers, schedules = self._parsed_definition(wid, definition)
        if triggers or schedules:
            self.workflows.load(*wid, definition.snapshot_uri, definition.snapshot_sha256, definition.workflow_file)
            self._create_queue_topics(wid, definition.snapshot_uri, definition.snapshot_sha256,
                                      definition.workflow_file)

    def _create_queue_topics(self, wid: WorkflowId, uri: str, sha256: str, workflow_file: str) -> None:
        """Create the tasks topics of the queues a workflow just loaded uses, before the transaction that
        may send them STARTs opens (once per queue and process: `topics.ensure_queue_topics`)."""
        try:
            workflow = self.workflows.get(*wid, uri, sha256, workflow_file)
        except WorkflowFileError:
            return  # the step fails the execution with the reason
        created = topics.ensure_queue_topics(self.config, {op.queue for op in workflow.tasks.values()})
        if created:
            log.info("scheduler: created the tasks topics %s for %s.%s", ", ".join(created), *wid)

    def run(self, stop: threading.Event) -> None:
        self.definitions.catch_up(stop)
        log.info("scheduler: started")
        try:
            self.loop.run_until(stop, self.step, self._recover)
        finally:
            self.loop.close()
            self.definitions.close()
            self.workflows.close()
            for host in self._trigger_hosts.values():
                host.close()
            log.info("scheduler: stopped")

    def _recover(self, abort: bool) -> None:
        """Forget what the failed step did: abort, rewind, and restore state from the changelog."""
        self._pending.clear()
        self._replayed = 0
        self._dirty.clear()
        self._dirty_workflows.clear()
        self.loop.abort()  # aborts what is open (if anything) and always rewinds to the committed offsets
        assignment = self.loop.consumer.assignment()
        # The heartbeats heard so far are true whatever the step did, and the state topic lacks them.
        heartbeats = {(o.execution.id, task, tries[-1].try_number): tries[-1].last_heartbeat
                      for o in self.executions.values() for task, tries in o.execution.tries.items()
                      if tries and tries[-1].last_heartbeat is not None}
        self.executions.clear()
        self._deadlines.clear()
        # `finished` is kept: the state topic no longer has the settled executions the projector has
        # tombstoned. But the ids this step settled are not settled: the step is undone, and its input
        # (a START that settled at once, say) must not then be taken for a duplicate.
        for execution_id in self._settled_now:
            self.finished.discard(execution_id)
        self._settled_now.clear()
        self.workflow_states.clear()
        self.assigned.clear()
        if assignment:
            self._restore(assignment, fresh=False, heartbeats=heartbeats)

