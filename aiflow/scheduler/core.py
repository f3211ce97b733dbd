"""The scheduler's core: pure functions of (execution state, input, now) -> commands.

No Kafka, no database, no clock it is not given. The service (`service.py`) consumes an input,
calls one of the `on_*` functions here with the execution's state and the loaded workflow, and
produces what they return — all in one Kafka transaction.

Invariants kept here:
- a task has at most one alive try (QUEUED, RUNNING, RETRYING or STOPPING) at a time;
- every try gets a number one higher than the task's previous try, and records its cause;
- a report about a try that is not the task's latest, or is already finished, changes nothing;
- a finished execution starts nothing new, and stops whatever it still has alive;
- while its workflow is disabled (`rules=False`), no rule of an execution is evaluated: events and
  status changes start, stop and restart nothing; commands, retries, timeouts and periodic tasks go on;
- what the core passes over for a reason the user must see (a START command on a live task, a rule
  whose condition failed) is said in the execution's `message`, not only in the log;
- no try waits forever: a START that no worker takes fails after `queue_timeout`, a STOP that is not
  confirmed is sent again as a KILL every `stop_timeout` and ends the try once its worker has been
  silent for `heartbeat_timeout`;
- time in which the scheduler heard no worker at all (`heard_since` None: an outage, its partitions
  moving, or no worker running) never counts toward the heartbeat and queue timeouts: when workers
  are heard again, every try gets a full timeout from then;
- a START goes to its task's queue (`StartTry.queue`); a QUEUED try whose queue has no live worker
  while others are heard waits without a queue timeout, and says so in its `message`
  (`waiting: no live worker for queue 'gpu'`) until a worker of that queue is heard (`Queues`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiflow.errors import AIFlowError
from aiflow.protocol.messages import Event
from aiflow.sdk.conditions import Condition, TaskRule
from aiflow.sdk.expressions import Expression
from aiflow.sdk.state import Context, MemoryContext
from aiflow.sdk.status import (
    TASK_ALIVE_SET,
    TASK_FINISHED_SET,
    WORKFLOW_FINISHED_SET,
    ExecutionType,
    TaskAction,
    TaskStatus,
    WorkflowStatus,
    task_status_event_key,
)
from aiflow.sdk.workflow import DEFAULT_QUEUE, Workflow

log = logging.getLogger(__name__)


# -- state -----------------------------------------------------------------------------------
@dataclass
class Snapshot:
    version: int
    uri: str
    sha256: str
    workflow_file: str


@dataclass
class TaskTry:
    task: str
    try_number: int
    status: str
    cause: str
    attempt: int = 1  # 1 for a fresh start, +1 for each retry of it
    queued_time: float | None = None
    begin_time: float | None = None
    end_time: float | None = None
    message: str = ""
    worker: str = ""
    last_heartbeat: float | None = None
    retry_at: float | None = None
    stop_reason: str = ""  # why we asked it to stop: "", "timeout", "heartbeat", "restart", "stop"
    then_start: str = ""  # for a RESTART: the cause of the try that starts once this one has stopped
    stop_time: float | None = None  # when the STOP (or the last KILL after it) was sent

    @property
    def alive(self) -> bool:
        return TaskStatus(self.status) in TASK_ALIVE_SET


@dataclass
class Execution:
    id: str
    namespace: str
    workflow: str
    snapshot: Snapshot
    run_type: str
    cause: str
    status: str = WorkflowStatus.RUNNING.value
    create_time: float = 0.0
    end_time: float | None = None
    tries: dict[str, list[TaskTry]] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)
    next_periodic: dict[str, float] = field(default_factory=dict)
    version: int = 0
    # Why it failed, when no try says it (its workflow could not be loaded); while it runs, the last thing
    # it passed over that the user must see: a START command on a live task, a rule whose condition failed.
    message: str = ""

    def latest(self, task: str) -> TaskTry | None:
        tries = self.tries.get(task)
        return tries[-1] if tries else None

    @property
    def finished(self) -> bool:
        return WorkflowStatus(self.status) in WORKFLOW_FINISHED_SET

    @property
    def settled(self) -> bool:
        """Finished, and no try of it is still stopping: nothing can change it any more."""
        return self.finished and not any(tries[-1].alive for tries in self.tries.values())

    def to_dict(self) -> dict[str, Any]:
        """What `dataclasses.asdict` gives, for `json.dumps` at once: the snapshot and the tries as dicts,
        the rest not copied (asdict's deep copy of every try was most of a state record's cost)."""
        data = dict(self.__dict__)
        data["snapshot"] = dict(self.snapshot.__dict__)
        data["tries"] = {task: [dict(t.__dict__) for t in tries] for task, tries in self.tries.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Execution:
        data = dict(data)
        data["snapshot"] = Snapshot(**data["snapshot"])
        data["tries"] = {task: [TaskTry(**t) for t in tries] for task, tries in data["tries"].items()}
        return cls(**data)


# Finished tries an execution's state keeps besides each task's latest try. Every decision reads only
# a task's latest try (`Execution.latest`, `tries[-1]`: rules' task statuses, settling, timeouts,
# the next try's number) and the worker's check of old START commands reads the same, so the earlier
# tries are there only to make the changelog readable: the most recent few of the whole execution,
# by end time. Older ones live on in the database (the projector upserts tries and never deletes
# one). This bounds the state record of a never-ending execution, which would otherwise grow with
# every restart of a periodic task and be rewritten whole on every change: it holds at most one try
# per task of the workflow plus TRIES_KEPT.
TRIES_KEPT = 20


def trim_history(ex: Execution) -> None:
    """Keep each task's latest try and the TRIES_KEPT most recently ended earlier ones."""
    earlier = sum(len(tries) - 1 for tries in ex.tries.values())
    if earlier <= TRIES_KEPT:
        return
    ranked = sorted(((t.end_time or t.begin_time or t.queued_time or 0.0, t.try_number, task)
                     for task, tries in ex.tries.items() for t in tries[:-1]), reverse=True)
    keep = {(task, number) for _, number, task in ranked[:TRIES_KEPT]}
    for task, tries in ex.tries.items():
        tries[:-1] = [t for t in tries[:-1] if (task, t.try_number) in keep]


# -- outputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartTry:
    """Send a START command for this try, to the tasks topic of its task's queue."""

    execution: Execution
    task: str
    try_number: int
    queue: str = DEFAULT_QUEUE


@dataclass(frozen=True)
class StopTry:
    """Tell whichever worker runs this try to stop it (`kill`: no grace period)."""

    execution_id: str
    task: str
    try_number: int
    reason: str
    kill: bool = False


@dataclass(frozen=True)
class StatusChanged:
    """A try's status changed; announced as an event so workflow triggers can listen to it."""

    execution: Execution
    task: str
    try_number: int
    status: str


Output = StartTry | StopTry | StatusChanged


WAITING_PREFIX = "waiting: no live worker for queue "


def waiting_message(queue: str) -> str:
    """What a QUEUED try says while no worker of its queue is heard."""
    return f"{WAITING_PREFIX}{queue!r}"


@dataclass(frozen=True)
class Queues:
    """What the scheduler has heard of the workers of each queue, for `on_tick` and `next_deadline`.

    `room_since`: each queue with a live worker (one heard recently) -> since when a worker of it has had
    a free slot without a break (None: they are all full, and a START waiting is a backlog). A queue
    missing from it has no live worker. `known`: workers have been heard long enough (a full beacon
    window, without a break) for a missing queue to mean that none serves it, rather than that its
    workers' beacons have not arrived yet (a scheduler just started) or that Kafka is away."""

    room_since: Mapping[str, float | None] = field(default_factory=dict)
    known: bool = True


@dataclass
class Settings:
    heartbeat_timeout: float = 30.0  # a RUNNING or STOPPING try whose worker is silent this long ends
    stop_timeout: float = 30.0  # a STOP not confirmed this long is sent again, as a KILL
    queue_timeout: float = 600.0  # a START that no worker took this long fails the try

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        """From the configuration's values (`scheduler.*`)."""
        return cls(float(values["scheduler.heartbeat_timeout"]), float(values["scheduler.stop_timeout"]),
                   float(values["scheduler.queue_timeout"]))


class _Context(MemoryContext):
    """Rule context of one execution: its rule states and its tasks' latest statuses."""

    def __init__(self, execution: Execution) -> None:
        statuses = {t: TaskStatus(tries[-1].status) for t, tries in execution.tries.items() if tries}
        super().__init__(states=execution.states, task_statuses=statuses)


class _Run:
    """Applies one input to one execution, collecting outputs. Used only inside this module."""

    def __init__(self, execution: Execution, workflow: Workflow, now: float, rules: bool = True) -> None:
        self.ex = execution
        self.wf = workflow
        self.now = now
        self.rules = rules  # False while the workflow is disabled: its rules are not evaluated
        self.out: list[Output] = []

    # -- tries -------------------------------------------------------------------------------
    def start(self, task: str, cause: str, attempt: int = 1, delay: float = 0.0) -> None:
        previous = self.ex.latest(task)
        number = previous.try_number + 1 if previous else 1
        if delay > 0:
            new = TaskTry(task, number, TaskStatus.RETRYING.value, cause, attempt, retry_at=self.now + delay)
            self.ex.tries.setdefault(task, []).append(new)
            self.changed(new)
            return
        new = TaskTry(task, number, TaskStatus.QUEUED.value, cause, attempt, queued_time=self.now)
        self.ex.tries.setdefault(task, []).append(new)
        self.out.append(StartTry(self.ex, task, number, _queue(self.wf, task)))
        self.changed(new)

    def stop(self, attempt: TaskTry, reason: str, kill: bool = False) -> None:
        if attempt.status in (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value):
            attempt.status = TaskStatus.STOPPING.value
            attempt.stop_reason = reason
            attempt.stop_time = self.now
            self.out.append(StopTry(self.ex.id, attempt.task, attempt.try_number, reason, kill))
            self.changed(attempt)
        elif attempt.status == TaskStatus.RETRYING.value:  # never started: nothing to tell a worker
            attempt.status = TaskStatus.STOPPED.value
            attempt.end_time = self.now
            attempt.stop_reason = reason
            self.changed(attempt)
        elif attempt.status == TaskStatus.STOPPING.value and reason != attempt.stop_reason and kill:
            self.out.append(StopTry(self.ex.id, attempt.task, attempt.try_number, reason, kill))

    def changed(self, attempt: TaskTry) -> None:
        self.out.append(StatusChanged(self.ex, attempt.task, attempt.try_number, attempt.status))

    # -- actions -----------------------------------------------------------------------------
    def act(self, task: str, action: TaskAction, cause: str, told: bool = False) -> None:
        """Take the action on the task. `told`: a user asked for it (a command), so what is passed over
        is said in the execution's message too."""
        latest = self.ex.latest(task)
        alive = latest is not None and latest.alive
        if action == TaskAction.START:
            if latest is not None and alive:
                log.info("execution %s: START of %s ignored, try %s is %s (%s)", self.ex.id, task,
                         latest.try_number, latest.status, cause)
                if told:
                    self.ex.message = (f"{cause} ignored: task {task!r} is {latest.status} (try "
                                       f"{latest.try_number}): stop it first, or restart it")
                return
            self.start(task, cause)
        elif action == TaskAction.STOP:
            if not alive:
                log.info("execution %s: STOP of %s ignored, no try of it is alive (%s)", self.ex.id, task, cause)
                if told:
                    self.ex.message = f"{cause} ignored: task {task!r} has no live try to stop"
                return
            assert latest is not None
            self.stop(latest, "stop")
        elif action == TaskAction.RESTART:
            if latest is not None and alive and latest.status != TaskStatus.RETRYING.value:
                if latest.status != TaskStatus.STOPPING.value:
                    self.stop(latest, "restart")
                latest.stop_reason = "restart"
                latest.then_start = cause
                return  # the new try starts when the worker reports this one STOPPED
            if latest is not None and alive:
                self.stop(latest, "restart")
            self.start(task, cause)

    def evaluate(self, event: Event, source: str, what: str | None = None) -> None:
        """Run the rules that expect this event; for each task, the first rule that fires wins.
        `what` describes the input in the tries' causes (default: the event key and its source)."""
        if not self.rules:
            log.debug("execution %s: %s passed over, its workflow is disabled", self.ex.id, event.key)
            return
        what = what or f"event {event.key!r}{f' at {source}' if source else ''}"
        context: Context = _Context(self.ex)
        # A condition shared by several rules is evaluated once per event, so a stateful one counts
        # each event once.
        results: dict[int, bool] = {}
        for task, rules in self.wf.rules.items():
            for index, rule in enumerate(rules, start=1):
                if (event.namespace, event.key) not in rule.condition.subscriptions(self.wf.namespace):
                    continue
                key = id(rule.condition)
                if key not in results:
                    results[key] = self._fires(rule, event, context, f"rule {index} of task {task!r}", what)
                if results[key]:
                    self.act(task, rule.action, f"rule {index} of {task} ({rule.action.value}) on {what}")
                    break
            if self.ex.finished:
                return

    def _fires(self, rule: TaskRule, event: Event, context: Context, which: str, what: str) -> bool:
        """Whether the rule fires. A condition that raises (a user's: it raised, hung, or kept a state that
        is not JSON) is not met; why is logged and said in the execution's message."""
        try:
            return rule.trigger(event, context) is not None
        except Exception as exc:  # a user's condition must not stop the scheduler
            reason = str(exc) if isinstance(exc, AIFlowError) else f"{type(exc).__name__}: {exc}"
            log.warning("execution %s: the condition of %s failed on %s; treated as not met: %s", self.ex.id,
                        which, what, reason, exc_info=not isinstance(exc, AIFlowError))  # a bug of ours: where
            self.ex.message = f"{which} failed on {what}, treated as not met: {reason}"
            return False

    # -- status ------------------------------------------------------------------------------
    def after_status_change(self, attempt: TaskTry) -> None:
        """Let the rules see the change, then settle the execution's status."""
        self.changed(attempt)
        if not self.ex.finished:
            key = task_status_event_key(self.ex.namespace, self.ex.workflow, attempt.task)
            status_event = Event(key=key, value=attempt.status, namespace=self.ex.namespace, execution_id=self.ex.id)
            self.evaluate(status_event, "", f"{attempt.task} try {attempt.try_number} {attempt.status}")
        self.settle()

    def can_restart(self, task: str) -> bool:
        op = self.wf.tasks.get(task)
        if op is not None and op.periodic is not None:
            return True
        return any(r.action in (TaskAction.START, TaskAction.RESTART) for r in self.wf.rules.get(task, []))

    def settle(self) -> None:
        if self.ex.finished:
            return
        latest = {t: self.ex.latest(t) for t in self.wf.tasks}
        ended = [a for a in latest.values() if a is not None and not a.alive]
        status: WorkflowStatus | None = None
        if any(a.status == TaskStatus.FAILED.value and not self.can_restart(a.task) for a in ended):
            status = WorkflowStatus.FAILED
        elif any(a.status == TaskStatus.STOPPED.value and not self.can_restart(a.task) for a in ended):
            status = WorkflowStatus.STOPPED
        elif all(a is not None and a.status == TaskStatus.SUCCESS.value for a in latest.values()) and \
                not any(op.periodic for op in self.wf.tasks.values()):
            status = WorkflowStatus.SUCCESS
        if status is not None:
            self.finish(status)

    def finish(self, status: WorkflowStatus) -> None:
        self.ex.status = status.value
        self.ex.end_time = self.now
        self.ex.next_periodic.clear()
        for tries in self.ex.tries.values():
            if tries[-1].alive:
                self.stop(tries[-1], "stop")

    def ended(self, attempt: TaskTry, status: str, message: str, at: float | None = None) -> None:
        """The try ended with this final status (SUCCESS, FAILED or STOPPED), at `at` (default: now)."""
        attempt.end_time = self.now if at is None else at
        if status == TaskStatus.SUCCESS.value:
            attempt.status = status
            attempt.message = message
            self.after_status_change(attempt)
        elif status == TaskStatus.FAILED.value or (status == TaskStatus.STOPPED.value and
                                                    attempt.stop_reason in ("timeout", "heartbeat", "queue")):
            reason = {"timeout": f"timed out after {_timeout(self.wf, attempt.task)} s",
                      "heartbeat": message or "no heartbeat"}.get(attempt.stop_reason, message)
            self.fail_or_retry(attempt, reason)
        else:
            attempt.status = TaskStatus.STOPPED.value
            attempt.message = message
            if attempt.stop_reason == "restart" and not self.ex.finished:
                self.changed(attempt)
                self.start(attempt.task, attempt.then_start or "restart")
            else:
                self.after_status_change(attempt)

    def stopping(self, attempt: TaskTry, settings: Settings, heard_since: float | None) -> None:
        """A STOP not confirmed: ended once the worker has been silent for a full heartbeat timeout (it
        is gone, so nobody can confirm), else sent again as a KILL every `stop_timeout`."""
        if _silent(attempt.last_heartbeat or attempt.stop_time, heard_since, self.now, settings.heartbeat_timeout):
            self.ended(attempt, TaskStatus.STOPPED.value,
                       f"the stop was not confirmed: no heartbeat for {settings.heartbeat_timeout:.0f} s "
                       f"(worker {attempt.worker or 'unknown'})")
        elif attempt.stop_time is not None and self.now - attempt.stop_time > settings.stop_timeout:
            attempt.stop_time = self.now
            self.out.append(StopTry(self.ex.id, attempt.task, attempt.try_number,
                                    f"{attempt.stop_reason or 'stop'} not confirmed within "
                                    f"{settings.stop_timeout:.0f} s", kill=True))

    def fail_or_retry(self, attempt: TaskTry, message: str) -> None:
        attempt.status = TaskStatus.FAILED.value
        attempt.end_time = self.now
        attempt.message = message
        op = self.wf.tasks.get(attempt.task)
        if op is not None and attempt.attempt <= op.max_retries and not self.ex.finished:
            self.changed(attempt)
            self.start(attempt.task, f"retry {attempt.attempt} of {op.max_retries} after try "
                                     f"{attempt.try_number} failed", attempt.attempt + 1, op.retry_delay)
            return
        self.after_status_change(attempt)


# -- the entry points ------------------------------------------------------------------------
def start_execution(workflow: Workflow, execution_id: str, snapshot: Snapshot, run_type: ExecutionType,
                    cause: str, now: float) -> tuple[Execution, list[Output]]:
    """A new execution: tasks with no START rule start at once; periodic tasks get their first tick."""
    ex = Execution(id=execution_id, namespace=workflow.namespace, workflow=workflow.name, snapshot=snapshot,
                   run_type=run_type.value, cause=cause, create_time=now)
    run = _Run(ex, workflow, now)
    for name, op in workflow.tasks.items():
        has_start = any(r.action == TaskAction.START for r in workflow.rules.get(name, []))
        if not has_start:
            run.start(name, "execution started")
        if op.periodic is not None:
            ex.next_periodic[name] = op.periodic.next_after(_as_datetime(now)).timestamp()
    run.settle()
    return ex, run.out


def unloadable_execution(namespace: str, workflow: str, execution_id: str, snapshot: Snapshot,
                         run_type: ExecutionType, cause: str, reason: str, now: float) -> Execution:
    """A new execution whose workflow cannot be loaded: FAILED at once, with the reason; it runs nothing."""
    return Execution(id=execution_id, namespace=namespace, workflow=workflow, snapshot=snapshot,
                     run_type=run_type.value, cause=cause, status=WorkflowStatus.FAILED.value, create_time=now,
                     end_time=now, message=reason)


def stand_in(ex: Execution) -> Workflow:
    """An empty workflow for an execution whose own cannot be loaded any more: with it the core still
    takes its tries' reports, so the execution settles once `fail_execution` has stopped them."""
    return Workflow(ex.workflow, ex.namespace)


def fail_execution(ex: Execution, reason: str, now: float) -> list[Output]:
    """The execution FAILED for a reason of its own (not a try's); its alive tries are stopped."""
    if ex.finished:
        return []
    run = _Run(ex, stand_in(ex), now)
    ex.message = reason
    run.finish(WorkflowStatus.FAILED)
    return run.out


def on_event(ex: Execution, workflow: Workflow, event: Event, source: str, now: float,
             rules: bool = True) -> list[Output]:
    """An event its rules may listen to (`rules` False: its workflow is disabled, nothing fires)."""
    if ex.finished or not rules:
        return []
    run = _Run(ex, workflow, now)
    run.evaluate(event, source)
    run.settle()
    return run.out


def on_command(ex: Execution, workflow: Workflow, command: str, task: str | None, now: float,
               rules: bool = True) -> list[Output]:
    """STOP_EXECUTION, or START_TASK / STOP_TASK / RESTART_TASK of `task`. A START_TASK of a task that
    is alive is passed over, and the execution's message says so."""
    run = _Run(ex, workflow, now, rules)
    if command == "STOP_EXECUTION":
        if not ex.finished:
            run.finish(WorkflowStatus.STOPPED)
        return run.out
    if ex.finished:
        log.info("execution %s is %s: %s %s ignored", ex.id, ex.status, command, task)
        return []
    if task not in workflow.tasks:
        log.info("execution %s: %s of unknown task %s ignored", ex.id, command, task)
        return []
    action = {"START_TASK": TaskAction.START, "STOP_TASK": TaskAction.STOP, "RESTART_TASK": TaskAction.RESTART}[command]
    run.act(task, action, f"command {command}", told=True)
    run.settle()
    return run.out


def reported_time(reported_at: float | None, earliest: float | None, now: float) -> float:
    """When a reported change happened: the report's own time (its worker's clock, as it wrote the report),
    kept between `earliest` (what came before it here: the try queued, or begun) and `now`, so a worker's
    clock that is off cannot put a try's begin before its START or its end after it was heard of. A report
    read late (after a scheduler's failover, or behind a backlog) then keeps the time the try began or
    ended, rather than the time it was read."""
    if reported_at is None:
        return now
    return min(now, max(reported_at, earliest or reported_at))


def on_report(ex: Execution, workflow: Workflow, task: str, try_number: int, status: str | None,
              message: str, worker: str, now: float, rules: bool = True,
              reported_at: float | None = None) -> list[Output]:
    """A worker's report on a try: a status (RUNNING, SUCCESS, FAILED, STOPPED) or a heartbeat (None),
    written at `reported_at` (None: now); the try's begin or end time is taken from it (`reported_time`).

    A heartbeat changes only the try's `last_heartbeat` (and `worker`) and returns nothing: the service
    keeps it in memory and writes no state record for it, so a restored try's `last_heartbeat` may be
    old. That is safe because a restore starts with no worker heard (`heard_since` None): no silence
    counts until workers are heard again, and then every try gets a full heartbeat timeout
    (`_silence_end` counts from the later of the last heartbeat and `heard_since`)."""
    attempt = ex.latest(task)
    if attempt is None or attempt.try_number != try_number or not attempt.alive:
        # Late, duplicate or unknown: the try it is about is no longer in play. One that says it runs
        # (a worker took a START after the try was given up) is told to stop at once.
        if status == TaskStatus.RUNNING.value:
            return [StopTry(ex.id, task, try_number, "the try is no longer in play", kill=True)]
        return []
    run = _Run(ex, workflow, now, rules)
    attempt.last_heartbeat = now
    if worker:
        attempt.worker = worker
    if status is None:
        return run.out
    if status == TaskStatus.RUNNING.value:
        if attempt.status == TaskStatus.QUEUED.value:
            attempt.status = TaskStatus.RUNNING.value
            attempt.begin_time = reported_time(reported_at, attempt.queued_time, now)
            if attempt.message.startswith(WAITING_PREFIX):
                attempt.message = ""
            run.changed(attempt)
        return run.out
    if TaskStatus(status) not in TASK_FINISHED_SET:
        return run.out
    run.ended(attempt, status, message, reported_time(reported_at, attempt.begin_time or attempt.queued_time, now))
    run.settle()
    return run.out


def on_tick(ex: Execution, workflow: Workflow, now: float, settings: Settings,
            heard_since: float | None = 0.0, room_since: float | None = 0.0, rules: bool = True,
            queues: Queues | None = None) -> list[Output]:
    """Time-driven decisions: retries due, timeouts, lost heartbeats, STARTs nobody took, STOPs not
    confirmed, periodic restarts, and what a QUEUED try says about its queue. `heard_since`: since when
    workers have been heard without a break (None: none is heard now); `room_since`: since when some
    worker has had a free slot without a break (None: every worker is full, and a START waiting is a
    backlog, not a loss); `queues`: the same per queue (None: every queue as `room_since` says, and no
    try is marked waiting). The defaults treat workers as always heard and with room. `rules` False
    (the workflow is disabled): the status changes it makes fire no rule."""
    run = _Run(ex, workflow, now, rules)
    for task, tries in ex.tries.items():
        attempt = tries[-1]
        if attempt.status == TaskStatus.STOPPING.value:  # even in a finished execution: it cannot settle before
            run.stopping(attempt, settings, heard_since)
        elif ex.finished:
            continue
        elif attempt.status == TaskStatus.RETRYING.value and attempt.retry_at is not None and attempt.retry_at <= now:
            attempt.status = TaskStatus.QUEUED.value
            attempt.queued_time = now
            attempt.retry_at = None
            run.out.append(StartTry(ex, task, attempt.try_number, _queue(workflow, task)))
            run.changed(attempt)
            _placed(attempt, _queue(workflow, task), queues, room_since)
        elif attempt.status == TaskStatus.RUNNING.value:
            timeout = _timeout(workflow, task)
            if timeout is not None and attempt.begin_time is not None and now - attempt.begin_time > timeout:
                run.stop(attempt, "timeout")
            elif _silent(attempt.last_heartbeat, heard_since, now, settings.heartbeat_timeout):
                # Its worker is gone, or cut off: fail the try, and tell any worker still running it to stop.
                run.out.append(StopTry(ex.id, task, attempt.try_number, "heartbeat", kill=True))
                run.fail_or_retry(attempt, f"no heartbeat for {settings.heartbeat_timeout:.0f} s "
                                           f"(worker {attempt.worker or 'unknown'})")
        elif attempt.status == TaskStatus.QUEUED.value:
            # The queue timeout counts only while a worker of the try's queue with a free slot is heard.
            room = _placed(attempt, _queue(workflow, task), queues, room_since)
            if _silent(attempt.queued_time, room, now, settings.queue_timeout):
                # Should a worker take the command after all, it is told to stop (and reports the try stale).
                run.out.append(StopTry(ex.id, task, attempt.try_number, "queue", kill=True))
                run.fail_or_retry(attempt, f"no worker took it within {settings.queue_timeout:.0f} s "
                                           "(scheduler.queue_timeout)")
    for task, due in sorted(ex.next_periodic.items()):
        if due <= now and not ex.finished:
            op = workflow.tasks[task]
            assert op.periodic is not None
            ex.next_periodic[task] = op.periodic.next_after(_as_datetime(now)).timestamp()
            run.act(task, TaskAction.RESTART, f"periodic {op.periodic}")
    run.settle()
    return run.out


def next_deadline(ex: Execution, workflow: Workflow, settings: Settings,
                  heard_since: float | None = 0.0, room_since: float | None = 0.0,
                  queues: Queues | None = None) -> float | None:
    """When `on_tick` may next have something to do for this execution (None: never, unless an input
    arrives first or workers are heard again)."""
    times: list[float | None] = [] if ex.finished else list(ex.next_periodic.values())
    for task, tries in ex.tries.items():
        attempt = tries[-1]
        if attempt.status == TaskStatus.STOPPING.value:
            if attempt.stop_time is not None:
                times.append(attempt.stop_time + settings.stop_timeout)
            times.append(_silence_end(attempt.last_heartbeat or attempt.stop_time, heard_since,
                                      settings.heartbeat_timeout))
        elif ex.finished:
            continue
        elif attempt.status == TaskStatus.RETRYING.value and attempt.retry_at is not None:
            times.append(attempt.retry_at)
        elif attempt.status == TaskStatus.RUNNING.value:
            timeout = _timeout(workflow, task)
            if timeout is not None and attempt.begin_time is not None:
                times.append(attempt.begin_time + timeout)
            times.append(_silence_end(attempt.last_heartbeat, heard_since, settings.heartbeat_timeout))
        elif attempt.status == TaskStatus.QUEUED.value:
            queue = _queue(workflow, task)
            if _marking_due(attempt, queue, queues):
                times.append(attempt.queued_time or 0.0)
            times.append(_silence_end(attempt.queued_time, _room_of(queue, queues, room_since), settings.queue_timeout))
    found = [t for t in times if t is not None]
    return min(found) if found else None


def _silence_end(since: float | None, heard_since: float | None, timeout: float) -> float | None:
    """When a silence that began at `since` (counted only from `heard_since` on) reaches `timeout`."""
    if since is None or heard_since is None:
        return None
    return max(since, heard_since) + timeout


def _silent(since: float | None, heard_since: float | None, now: float, timeout: float) -> bool:
    end = _silence_end(since, heard_since, timeout)
    return end is not None and now > end


def _queue(workflow: Workflow, task: str) -> str:
    op = workflow.tasks.get(task)
    return op.queue if op is not None else DEFAULT_QUEUE


def _room_of(queue: str, queues: Queues | None, room_since: float | None) -> float | None:
    """Since when a worker of `queue` has had a free slot (None: none has now, so a queue timeout waits)."""
    if queues is None:
        return room_since
    return queues.room_since.get(queue)


def _marking_due(attempt: TaskTry, queue: str, queues: Queues | None) -> bool:
    """Whether what the QUEUED try says of its queue is out of date."""
    if queues is None:
        return False
    waiting = attempt.message.startswith(WAITING_PREFIX)
    if queue in queues.room_since:
        return waiting
    return queues.known and not waiting


def _placed(attempt: TaskTry, queue: str, queues: Queues | None, room_since: float | None) -> float | None:
    """Bring what the QUEUED try says of its queue up to date (`waiting: no live worker for queue ...`
    while none is heard, nothing once one is), and return since when its queue has had room."""
    if _marking_due(attempt, queue, queues):
        attempt.message = "" if attempt.message.startswith(WAITING_PREFIX) else waiting_message(queue)
    return _room_of(queue, queues, room_since)


def _timeout(workflow: Workflow, task: str) -> float | None:
    op = workflow.tasks.get(task)
    return op.timeout if op is not None else None


def _as_datetime(now: float) -> datetime:
    return datetime.fromtimestamp(now, tz=timezone.utc)


# -- workflow-level: triggers and schedules ---------------------------------------------------
@dataclass
class WorkflowState:
    """What the scheduler keeps per workflow: trigger condition states, the next schedule ticks, and how
    far its input has been applied (so input read again after lost offsets changes nothing)."""

    namespace: str
    workflow: str
    trigger_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule_next: dict[str, float] = field(default_factory=dict)
    version: int = 0
    inbox_offset: int = -1  # of the last inbox message applied for this workflow
    event_positions: dict[str, int] = field(default_factory=dict)  # events partition -> last offset applied
    # Triggers and schedules that cannot be evaluated ("trigger 3", "schedule 1") and why: the scheduler
    # passes them over and they show as paused with this reason until the definition changes.
    rule_errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkflowState:
        return cls(**data)


def first_sight(ws: WorkflowState, inbox_offset: int, event_position: tuple[int, int] | None = None) -> bool:
    """True, and the positions recorded, when this inbox message (and the event it carries, at (events
    partition, offset)) has not been applied yet; False for input read again.

    Offsets commit in the same transaction as the state they led to, so after a normal restart nothing
    is read twice; when a consumer group's offsets are lost (expired, deleted), the router routes old
    events again and the scheduler reads the inbox from its start, and this is what keeps them from
    firing rules or starting executions a second time. Each workflow's inbox messages are in one
    partition, and the router keeps the order of each events partition, so both sequences only grow.
    """
    if inbox_offset <= ws.inbox_offset:
        return False
    if event_position is not None:
        partition, offset = str(event_position[0]), event_position[1]
        if offset <= ws.event_positions.get(partition, -1):
            ws.inbox_offset = inbox_offset
            return False
        ws.event_positions[partition] = offset
    ws.inbox_offset = inbox_offset
    return True


def on_trigger_event(ws: WorkflowState, triggers: list[tuple[int, Condition]], event: Event,
                     now: float) -> list[int]:
    """The ids of the triggers this event fires. Each trigger's condition keeps its own state."""
    fired = []
    for trigger_id, condition in triggers:
        if (event.namespace, event.key) not in condition.subscriptions(ws.namespace):
            continue
        context = MemoryContext(states=ws.trigger_states.setdefault(str(trigger_id), {}))
        try:
            met = condition.is_met(event, context)
        except Exception:
            log.exception("workflow %s.%s: the condition of trigger %s raised; treated as not met",
                          ws.namespace, ws.workflow, trigger_id)
            met = False
        if met:
            fired.append(trigger_id)
    live = {str(t) for t, _ in triggers}
    for gone in [t for t in ws.trigger_states if t not in live]:
        del ws.trigger_states[gone]
    return fired


def due_schedules(ws: WorkflowState, schedules: list[tuple[int, Expression]], now: float) -> list[int]:
    """The ids of the schedules due now; each fires once, however many ticks were missed while no
    scheduler ran, and its next tick is the first one after now."""
    due = []
    live = set()
    for schedule_id, expression in schedules:
        key = str(schedule_id)
        live.add(key)
        if key not in ws.schedule_next:
            ws.schedule_next[key] = expression.next_after(_as_datetime(now)).timestamp()
        elif ws.schedule_next[key] <= now:
            due.append(schedule_id)
            ws.schedule_next[key] = expression.next_after(_as_datetime(now)).timestamp()
    for gone in [k for k in ws.schedule_next if k not in live]:
        del ws.schedule_next[gone]
    return due
