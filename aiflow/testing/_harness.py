"""`WorkflowTest`: a workflow file run in-process against the scheduler's own core, with a fake clock.

No broker, no database, no worker: the harness plays the router (an event reaches the rules of the
executions that listen to it, an event from a task only its own execution's), the scheduler loop (it
calls the very functions of `aiflow.scheduler.core` that the scheduler calls, and ticks them as the
clock moves) and the worker (the test says how each try ends, or lets the harness run the operator
in-process). What differs from a deployment, on purpose:

- Workers are always there and always have room: a try waits QUEUED for as long as the test wants
  (no queue timeout), a RUNNING try never loses its heartbeat, and a STOP is confirmed at once
  (`confirm_stops=False` leaves tries STOPPING until `stopped(task)`).
- Time moves only when the test calls `advance`; periodic tasks, schedules, retry delays and task
  timeouts fire in order on the way.
- Events are delivered at once, in the order sent; causes name the event without its Kafka position.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from aiflow.protocol.messages import Event
from aiflow.scheduler import core
from aiflow.sdk.conditions import Condition, WorkflowRule
from aiflow.sdk.expressions import Expression, parse_expression
from aiflow.sdk.loader import load_workflows
from aiflow.sdk.status import ExecutionType, TaskStatus, WorkflowStatus, task_status_event_key
from aiflow.sdk.workflow import NAMESPACE_ENV, Workflow

# 2024-01-01 00:00:00 UTC: a round start for cron expressions (`start=` takes another).
DEFAULT_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
WORKER = "aiflow-testing"
# A strict timeout (a try that runs *longer* than its timeout) is due just after its deadline.
_EPSILON = 0.001
_TICKS_PER_ADVANCE = 1_000_000


class WorkflowTestError(AssertionError):
    """The test asked for something the workflow cannot do now (a task with no try in play, say), or
    an `assert_*` helper failed. An AssertionError, so pytest shows it as a failed assertion."""


@dataclass(frozen=True)
class Change:
    """One status change of a try, as the scheduler announced it, at the fake clock's time."""

    time: float
    execution_id: str
    task: str
    try_number: int
    status: TaskStatus


_load_lock = threading.Lock()


def load_workflow_file(path: str | os.PathLike[str], namespace: str | None = None) -> list[Workflow]:
    """The workflows a file defines, loaded in this process as `aiflow workflow upload` loads them (with
    `namespace` as the default namespace). Load a file that imports heavy libraries once per test
    module and give the workflows to each WorkflowTest: the core never changes a Workflow."""
    with _load_lock:
        before = os.environ.get(NAMESPACE_ENV)
        if namespace is not None:
            os.environ[NAMESPACE_ENV] = namespace
        try:
            return load_workflows(path)
        finally:
            if namespace is not None:
                if before is None:
                    os.environ.pop(NAMESPACE_ENV, None)
                else:
                    os.environ[NAMESPACE_ENV] = before


def _seconds(moment: float | datetime) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)


class ExecutionHandle:
    """One execution in a `WorkflowTest`: drive its tries and look at them.

    Task methods act on the task's latest try, as a worker's report would: `succeed`, `fail`,
    `running`, `stopped`, `run`. Commands act as `aiflow task-execution start|stop|restart` and
    `aiflow workflow-execution stop` would."""

    def __init__(self, harness: WorkflowTest, execution: core.Execution) -> None:
        self._harness = harness
        self.state = execution  # the scheduler's own record of it (core.Execution)
        self._order: list[tuple[str, int]] = []  # every try, in the order the scheduler created them
        self._known: set[tuple[str, int]] = set()

    # -- what it is ------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.state.id

    @property
    def workflow(self) -> Workflow:
        return self._harness.workflows[self.state.workflow]

    @property
    def status(self) -> WorkflowStatus:
        return WorkflowStatus(self.state.status)

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def run_type(self) -> ExecutionType:
        return ExecutionType(self.state.run_type)

    @property
    def cause(self) -> str:
        """Why it started: 'started by the test', 'trigger 1 on event ...', 'schedule 1 (...)'."""
        return self.state.cause

    # -- its tries -------------------------------------------------------------------------
    def tries(self, task: str) -> list[core.TaskTry]:
        """Every try of the task, oldest first (each with its `status`, `cause`, `message`, `attempt`)."""
        self._check_task(task)
        return list(self.state.tries.get(task, []))

    def latest(self, task: str) -> core.TaskTry | None:
        self._check_task(task)
        return self.state.latest(task)

    def task_status(self, task: str) -> TaskStatus | None:
        """The status of the task's latest try; None if it never had one."""
        latest = self.latest(task)
        return TaskStatus(latest.status) if latest else None

    def cause_of(self, task: str, try_number: int | None = None) -> str:
        """Why the task's latest try (or try `try_number`) was started: the rule and its input, a
        command, a retry, a periodic restart, or 'execution started'."""
        return self._try(task, try_number).cause

    def started(self) -> list[str]:
        """The task of every try, in the order the scheduler created them (a retry counts)."""
        return [task for task, _ in self._order]

    def queued(self) -> list[str]:
        """The tasks whose latest try waits for a worker (QUEUED), in the order they were queued."""
        seen = [t for t, n in self._order if (latest := self.state.latest(t)) is not None and
                latest.try_number == n and latest.status == TaskStatus.QUEUED.value]
        return list(dict.fromkeys(seen))

    def timeline(self) -> list[str]:
        """Every status change of this execution's tries, one line each: for failure messages."""
        start = self._harness.start_time
        return [f"+{c.time - start:g}s {c.task}#{c.try_number} {c.status.value}"
                for c in self._harness.changes if c.execution_id == self.id]

    # -- a worker's reports ----------------------------------------------------------------
    def running(self, task: str) -> ExecutionHandle:
        """The task's QUEUED try was taken by a worker: it is RUNNING."""
        attempt = self._alive(task, "run")
        if attempt.status == TaskStatus.QUEUED.value:
            self._report(attempt, TaskStatus.RUNNING.value)
        return self

    def succeed(self, task: str, message: str = "") -> ExecutionHandle:
        """The task's try in play ends with SUCCESS (it is made RUNNING first if it was QUEUED)."""
        self._end(task, TaskStatus.SUCCESS, message)
        return self

    def fail(self, task: str, reason: str = "failed by the test") -> ExecutionHandle:
        """The task's try in play ends FAILED with `reason` (retried if it has retries left)."""
        self._end(task, TaskStatus.FAILED, reason)
        return self

    def stopped(self, task: str) -> ExecutionHandle:
        """The worker confirms the stop of the task's STOPPING try (needed with `confirm_stops=False`)."""
        attempt = self._alive(task, "confirm the stop of")
        if attempt.status != TaskStatus.STOPPING.value:
            raise WorkflowTestError(f"task {task!r}: try {attempt.try_number} is {attempt.status}, not STOPPING")
        self._report(attempt, TaskStatus.STOPPED.value)
        return self

    def run(self, task: str) -> ExecutionHandle:
        """Run the operator of the task's QUEUED try in this process, as a worker would: returning is
        SUCCESS, raising is FAILED. Events it sends are delivered as they are sent."""
        attempt = self._alive(task, "run")
        if attempt.status != TaskStatus.QUEUED.value:
            raise WorkflowTestError(f"task {task!r}: try {attempt.try_number} is {attempt.status}, not QUEUED")
        self._harness._run_try(self, attempt)
        return self

    def run_tasks(self, *tasks: str, limit: int = 100) -> ExecutionHandle:
        """Run QUEUED tries (of `tasks`, or of every task) in-process, in the order they were queued, until
        none is left; tries they cause run too. More than `limit` tries is an error (a loop)."""
        self._harness._run_queued([self], tasks, limit)
        return self

    # -- commands --------------------------------------------------------------------------
    def start_task(self, task: str) -> ExecutionHandle:
        """`aiflow task-execution start`: a new try, unless one is alive."""
        return self._command("START_TASK", task)

    def stop_task(self, task: str) -> ExecutionHandle:
        return self._command("STOP_TASK", task)

    def restart_task(self, task: str) -> ExecutionHandle:
        return self._command("RESTART_TASK", task)

    def stop(self) -> ExecutionHandle:
        """`aiflow workflow-execution stop`: STOPPED, and every alive try stopped."""
        return self._command("STOP_EXECUTION", None)

    # -- assertions ------------------------------------------------------------------------
    def assert_started(self, task: str, times: int | None = None, cause: str | None = None) -> None:
        """The task had a try (exactly `times` tries, if given); with `cause`, its latest try's cause
        contains that text."""
        tries = self.tries(task)
        if not tries or (times is not None and len(tries) != times):
            wanted = "at least once" if times is None else f"{times} times"
            self._fail(f"task {task!r} was started {len(tries)} times, expected {wanted}")
        if cause is not None and cause not in tries[-1].cause:
            self._fail(f"task {task!r} try {tries[-1].try_number} was started by {tries[-1].cause!r}, "
                       f"expected a cause containing {cause!r}")

    def assert_not_started(self, task: str) -> None:
        tries = self.tries(task)
        if tries:
            self._fail(f"task {task!r} was started {len(tries)} times ({tries[0].cause}), expected never")

    # -- inside ----------------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        lines = "\n  ".join(self.timeline()) or "(no try)"
        raise WorkflowTestError(f"execution {self.id} of {self.state.workflow}: {message}\n"
                                f"its tries, as they changed:\n  {lines}")

    def _check_task(self, task: str) -> None:
        if task not in self.workflow.tasks:
            raise WorkflowTestError(f"workflow {self.state.workflow!r} has no task {task!r} "
                                    f"(it has {', '.join(self.workflow.tasks) or 'none'})")

    def _try(self, task: str, try_number: int | None) -> core.TaskTry:
        tries = self.tries(task)
        found = [t for t in tries if try_number is None or t.try_number == try_number]
        if not found:
            raise WorkflowTestError(f"task {task!r} has no try {try_number}" if try_number is not None
                                    else f"task {task!r} was never started")
        return found[-1]

    def _alive(self, task: str, doing: str) -> core.TaskTry:
        latest = self.latest(task)
        if latest is None:
            raise WorkflowTestError(f"cannot {doing} task {task!r}: it was never started")
        if latest.status == TaskStatus.RETRYING.value:
            raise WorkflowTestError(f"cannot {doing} task {task!r}: try {latest.try_number} waits to be retried at "
                                    f"+{(latest.retry_at or 0) - self._harness.start_time:g}s; advance the clock")
        if not latest.alive:
            raise WorkflowTestError(f"cannot {doing} task {task!r}: no try of it is in play (try "
                                    f"{latest.try_number} is {latest.status})")
        return latest

    def _end(self, task: str, status: TaskStatus, message: str) -> None:
        attempt = self._alive(task, "end")
        if attempt.status == TaskStatus.QUEUED.value:
            self._report(attempt, TaskStatus.RUNNING.value)
        self._report(attempt, status.value, message)

    def _report(self, attempt: core.TaskTry, status: str, message: str = "") -> None:
        h = self._harness
        h._apply(self, core.on_report(self.state, self.workflow, attempt.task, attempt.try_number, status, message,
                                      WORKER, h.now))

    def _command(self, command: str, task: str | None) -> ExecutionHandle:
        if task is not None:
            self._check_task(task)
        h = self._harness
        h._apply(self, core.on_command(self.state, self.workflow, command, task, h.now))
        return self

    def _seen(self, task: str, try_number: int) -> None:
        """Note a try the first time an output names it, for `started()`."""
        if (task, try_number) not in self._known:
            self._known.add((task, try_number))
            self._order.append((task, try_number))

    def __repr__(self) -> str:
        return f"<execution {self.id} of {self.state.workflow}: {self.state.status}>"


class WorkflowTest:
    """Workflows run in-process on the scheduler's core: send events, move a fake clock, end tries.

        wt = WorkflowTest("flow.py")          # a file (every workflow in it), a Workflow, or a list of them
        ex = wt.start()                       # an execution of the (only, or named) workflow
        wt.send_event("data_ready")
        ex.succeed("train")                   # or ex.run_tasks(): run the operators here
        wt.advance(60)                        # periodic tasks, schedules, retries, timeouts fire
        assert ex.task_status("validate") == "QUEUED"

    The task methods of `ExecutionHandle` (`succeed`, `fail`, `tries`, `assert_started`, ...) are
    also on the WorkflowTest itself, where they act on the latest execution started.
    """

    def __init__(self, source: str | os.PathLike[str] | Workflow | Sequence[Workflow], *,
                 namespace: str | None = None, start: float | datetime = DEFAULT_START,
                 settings: core.Settings | None = None, confirm_stops: bool = True,
                 working_dir: str | os.PathLike[str] | None = None) -> None:
        """`source`: a workflow file (loaded here, as `aiflow workflow upload` would, with `namespace`
        as the default namespace), a Workflow or a list of them. `start`: the fake clock's first time.
        `working_dir`: where `run` runs tasks (default: the file's folder, else the current one)."""
        if isinstance(source, Workflow):
            found, file = [source], None
        elif isinstance(source, (str, os.PathLike)):
            file = Path(source).resolve()
            found = load_workflow_file(file, namespace)
        else:
            found, file = list(source), None
        if not found or not all(isinstance(w, Workflow) for w in found):
            raise WorkflowTestError(f"WorkflowTest needs a workflow file or Workflow objects, got {source!r}")
        self.workflows: dict[str, Workflow] = {}
        for wf in found:
            if wf.name in self.workflows:
                raise WorkflowTestError(f"two workflows named {wf.name!r}")
            self.workflows[wf.name] = wf
        self.file = file
        self.working_dir = Path(working_dir) if working_dir is not None else (file.parent if file else Path.cwd())
        self.start_time = self.now = _seconds(start)
        self.settings = settings or core.Settings()
        self.confirm_stops = confirm_stops
        self.events: list[Event] = []  # every event sent, by the test or by tasks, in order
        self.changes: list[Change] = []  # every status change of every try, in order
        self._executions: list[ExecutionHandle] = []
        self._by_id: dict[str, ExecutionHandle] = {}
        self._states: dict[str, core.WorkflowState] = {n: core.WorkflowState(w.namespace, n)
                                                       for n, w in self.workflows.items()}
        self._triggers: dict[str, list[tuple[int, Condition]]] = {n: [] for n in self.workflows}
        self._schedules: dict[str, list[tuple[int, Expression]]] = {n: [] for n in self.workflows}
        self._queue: list[tuple[ExecutionHandle, str, int]] = []  # START commands, in the order sent
        self._deadlines: dict[str, float] = {}  # execution id -> when on_tick next has something to do
        self._rule_ids = 0

    # -- the clock -------------------------------------------------------------------------
    @property
    def clock(self) -> datetime:
        """The fake clock, as a UTC datetime (`now` is the same in seconds since the epoch)."""
        return datetime.fromtimestamp(self.now, tz=timezone.utc)

    @property
    def elapsed(self) -> float:
        """Seconds since the fake clock's start."""
        return self.now - self.start_time

    def advance(self, seconds: float) -> WorkflowTest:
        """Move the clock on by `seconds`, stopping at every moment something is due on the way: periodic
        restarts, schedules, retries after their delay, tries past their timeout."""
        if seconds < 0:
            raise WorkflowTestError("the clock only moves forward")
        target = self.now + seconds
        for _ in range(_TICKS_PER_ADVANCE):
            due = self._next_deadline()
            if due is None or due > target:
                break
            self.now = max(self.now, due)
            self._tick()
            if (after := self._next_deadline()) is not None and after <= self.now:
                # Due, but nothing happened: a strict deadline ("longer than"), due a moment later.
                if self.now >= target:
                    break
                self.now = min(self.now + _EPSILON, target)
                self._tick()
        else:
            raise WorkflowTestError(f"more than {_TICKS_PER_ADVANCE} ticks in {seconds} s")
        self.now = target
        self._tick()
        return self

    def _next_deadline(self) -> float | None:
        times = [t for ws in self._states.values() for t in ws.schedule_next.values()]
        times += self._deadlines.values()
        return min(times) if times else None

    def _tick(self) -> None:
        for handle in [self._by_id[e] for e, due in list(self._deadlines.items()) if due <= self.now]:
            self._apply(handle, core.on_tick(handle.state, handle.workflow, self.now, self.settings,
                                             heard_since=None, room_since=None))
        for name, schedules in self._schedules.items():
            if schedules:
                for schedule_id in core.due_schedules(self._states[name], schedules, self.now):
                    expression = dict(schedules)[schedule_id]
                    self._start(name, ExecutionType.PERIODIC, f"schedule {schedule_id} ({expression})")

    def _track(self, handle: ExecutionHandle) -> None:
        """Remember when the execution next needs a tick (the scheduler keeps the same, per execution)."""
        due = None if handle.state.settled else core.next_deadline(handle.state, handle.workflow, self.settings,
                                                                   heard_since=None, room_since=None)
        if due is None:
            self._deadlines.pop(handle.id, None)
        else:
            self._deadlines[handle.id] = due

    # -- executions ------------------------------------------------------------------------
    def start(self, workflow: str | None = None) -> ExecutionHandle:
        """Start an execution of `workflow` (needed when there are several), as `aiflow workflow-execution
        start` does: tasks without a START rule are QUEUED at once."""
        return self._start(self._name(workflow), ExecutionType.MANUAL, "started by the test")

    def executions(self, workflow: str | None = None) -> list[ExecutionHandle]:
        """Every execution (of `workflow`), oldest first."""
        name = None if workflow is None else self._name(workflow)
        return [h for h in self._executions if name is None or h.state.workflow == name]

    @property
    def execution(self) -> ExecutionHandle:
        """The latest execution started (by the test, a trigger or a schedule)."""
        if not self._executions:
            raise WorkflowTestError("no execution yet: call start() (or send what starts one)")
        return self._executions[-1]

    @property
    def execution_status(self) -> WorkflowStatus:
        return self.execution.status

    def _name(self, workflow: str | None) -> str:
        if workflow is None:
            if len(self.workflows) > 1:
                raise WorkflowTestError(f"several workflows ({', '.join(self.workflows)}): name one")
            return next(iter(self.workflows))
        if workflow not in self.workflows:
            raise WorkflowTestError(f"no workflow {workflow!r} here (there are {', '.join(self.workflows)})")
        return workflow

    def _start(self, name: str, run_type: ExecutionType, cause: str) -> ExecutionHandle:
        wf = self.workflows[name]
        execution_id = f"e{len(self._executions) + 1}"
        snapshot = core.Snapshot(1, self.file.as_uri() if self.file else "memory:", "0" * 64,
                                 self.file.name if self.file else f"{name}.py")
        execution, outputs = core.start_execution(wf, execution_id, snapshot, run_type, cause, self.now)
        handle = ExecutionHandle(self, execution)
        self._executions.append(handle)
        self._by_id[execution_id] = handle
        self._apply(handle, outputs)
        return handle

    # -- triggers and schedules ------------------------------------------------------------
    def add_trigger(self, condition: Condition | WorkflowRule, workflow: str | None = None) -> int:
        """A workflow trigger, as `ops.add_workflow_trigger`: each event that meets the condition
        starts a new execution (run type EVENT). Returns its id."""
        name = self._name(workflow)
        rule = condition.condition if isinstance(condition, WorkflowRule) else condition
        if not isinstance(rule, Condition):
            raise WorkflowTestError(f"add_trigger needs a Condition or a WorkflowRule, got {condition!r}")
        self._rule_ids += 1
        self._triggers[name].append((self._rule_ids, rule))
        return self._rule_ids

    def add_schedule(self, expression: str, workflow: str | None = None) -> int:
        """A schedule, as `ops.add_workflow_schedule` ('cron@...' or 'interval@...'): it starts an
        execution (run type PERIODIC) at each tick of the fake clock. Returns its id."""
        name = self._name(workflow)
        self._rule_ids += 1
        self._schedules[name].append((self._rule_ids, parse_expression(expression)))
        core.due_schedules(self._states[name], self._schedules[name], self.now)  # its first tick
        return self._rule_ids

    # -- events ----------------------------------------------------------------------------
    def send_event(self, key: str, value: str | None = None, *, namespace: str | None = None) -> Event:
        """An event from outside (the CLI, a service, any producer), in `namespace` (default: the first
        workflow's). It reaches the rules of every execution that listens to it, and the triggers."""
        if namespace is None:
            namespace = next(iter(self.workflows.values())).namespace
        return self._send(Event(key=key, value=value, namespace=namespace, sender="aiflow-testing"))

    def _send(self, event: Event) -> Event:
        stored = event.stored(0, len(self.events), self.clock)
        self.events.append(stored)
        for handle in list(self._executions):
            if not handle.finished and (not stored.execution_id or stored.execution_id == handle.id):
                self._apply(handle, core.on_event(handle.state, handle.workflow, stored, "", self.now))
        self._fire_triggers(stored)
        return stored

    def _fire_triggers(self, event: Event) -> None:
        for name, triggers in self._triggers.items():
            if triggers:
                for trigger_id in core.on_trigger_event(self._states[name], triggers, event, self.now):
                    self._start(name, ExecutionType.EVENT, f"trigger {trigger_id} on event {event.key!r}")

    # -- outputs ---------------------------------------------------------------------------
    def _apply(self, handle: ExecutionHandle, outputs: list[core.Output]) -> None:
        """Do what the scheduler would with the core's outputs: START commands wait in the queue, a STOP is
        confirmed by the (always cooperative) worker, and status changes reach the triggers."""
        pending = deque(outputs)
        while pending:
            out = pending.popleft()
            if isinstance(out, core.StartTry):
                handle._seen(out.task, out.try_number)
                self._queue.append((handle, out.task, out.try_number))
            elif isinstance(out, core.StatusChanged):
                handle._seen(out.task, out.try_number)
                self.changes.append(Change(self.now, handle.id, out.task, out.try_number, TaskStatus(out.status)))
                if any(self._triggers.values()):
                    ex = handle.state
                    self._fire_triggers(Event(key=task_status_event_key(ex.namespace, ex.workflow, out.task),
                                              value=out.status, namespace=ex.namespace, sender="aiflow-scheduler",
                                              workflow=ex.workflow, execution_id=ex.id, task=out.task,
                                              try_number=out.try_number))
            elif isinstance(out, core.StopTry) and self.confirm_stops:
                latest = handle.state.latest(out.task)
                if latest is not None and latest.try_number == out.try_number and \
                        latest.status == TaskStatus.STOPPING.value:
                    pending.extend(core.on_report(handle.state, handle.workflow, out.task, out.try_number,
                                                  TaskStatus.STOPPED.value, "", WORKER, self.now))
        self._track(handle)

    # -- running tasks ---------------------------------------------------------------------
    def run_tasks(self, *tasks: str, limit: int = 100) -> WorkflowTest:
        """Run every QUEUED try (of `tasks`, if named) of every execution in-process, in the order they
        were queued, until none is left; tries they cause (by their events, or by succeeding) run too.
        More than `limit` tries is an error: the workflow loops."""
        self._run_queued(None, tasks, limit)
        return self

    def _run_queued(self, only: list[ExecutionHandle] | None, tasks: Sequence[str], limit: int) -> None:
        for name in tasks:
            if not any(name in wf.tasks for wf in self.workflows.values()):
                raise WorkflowTestError(f"no workflow here has a task {name!r}")
        ran = 0
        while True:
            waiting = [(h, t, n) for h, t, n in self._queue
                       if (only is None or h in only) and (not tasks or t in tasks)
                       and (latest := h.state.latest(t)) is not None and latest.try_number == n
                       and latest.status == TaskStatus.QUEUED.value]
            if not waiting:
                return
            if ran >= limit:
                raise WorkflowTestError(f"more than {limit} tries ran: does the workflow start tasks without end? "
                                        "(raise run_tasks' limit if not)")
            handle, task, number = waiting[0]
            self._queue.remove(waiting[0])
            latest = handle.state.latest(task)
            assert latest is not None
            self._run_try(handle, latest)
            ran += 1

    def _run_try(self, handle: ExecutionHandle, attempt: core.TaskTry) -> None:
        from aiflow.testing._tasks import run_operator

        handle._report(attempt, TaskStatus.RUNNING.value)
        error = run_operator(self, handle, attempt)
        if attempt.alive:  # not stopped meanwhile by a rule its own events fired
            if error is None:
                handle._report(attempt, TaskStatus.SUCCESS.value)
            else:
                handle._report(attempt, TaskStatus.FAILED.value, error)

    # -- shortcuts to the latest execution -----------------------------------------------------
    def tries(self, task: str) -> list[core.TaskTry]:
        return self.execution.tries(task)

    def task_status(self, task: str) -> TaskStatus | None:
        return self.execution.task_status(task)

    def cause_of(self, task: str, try_number: int | None = None) -> str:
        return self.execution.cause_of(task, try_number)

    def started(self) -> list[str]:
        return self.execution.started()

    def queued(self) -> list[str]:
        return self.execution.queued()

    def running(self, task: str) -> ExecutionHandle:
        return self.execution.running(task)

    def succeed(self, task: str, message: str = "") -> ExecutionHandle:
        return self.execution.succeed(task, message)

    def fail(self, task: str, reason: str = "failed by the test") -> ExecutionHandle:
        return self.execution.fail(task, reason)

    def stopped(self, task: str) -> ExecutionHandle:
        return self.execution.stopped(task)

    def run(self, task: str) -> ExecutionHandle:
        return self.execution.run(task)

    def assert_started(self, task: str, times: int | None = None, cause: str | None = None) -> None:
        self.execution.assert_started(task, times, cause)

    def assert_not_started(self, task: str) -> None:
        self.execution.assert_not_started(task)
