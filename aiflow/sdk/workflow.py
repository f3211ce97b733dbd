"""Workflows and tasks as users write them.

    with Workflow(name="online_machine_learning") as workflow:
        train = PythonOperator(name="training", python_callable=train)
        validate = PythonOperator(name="validating", python_callable=validate)
        train.action_on_event_received(action=TaskAction.START, event_key="data_prepared")
        validate.start_after(train)

Mistakes are refused where they are made, with the line of the user's file: a task outside a
`with Workflow` block, two tasks of one name, a rule naming a task of another workflow, a bad
schedule expression; a `start_after` cycle is refused when the block closes.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from types import FrameType, TracebackType
from typing import Any

from aiflow.errors import WorkflowDefinitionError
from aiflow.sdk.conditions import (
    Condition,
    SingleEventCondition,
    TaskRule,
    TaskStatusAllMetCondition,
    TaskStatusCondition,
)
from aiflow.sdk.expressions import Expression, parse_expression
from aiflow.sdk.status import TaskAction, TaskStatus

NAMESPACE_ENV = "AIFLOW_NAMESPACE"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
# A queue names a Kafka topic (`<prefix>.tasks.<queue>`) and a consumer's subscription: lower-case
# letters, digits, '_' and '-' only, so it is the same name on every platform and in every tool.
QUEUE_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")
DEFAULT_QUEUE = "default"
_PACKAGE_DIRS = tuple(os.path.dirname(os.path.dirname(p)) + os.sep for p in (__file__,))
_context = threading.local()


def user_line() -> int | None:
    """The line of the first caller outside aiflow: where the user wrote what is being checked."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIRS) and "/ai_flow/" not in filename:
            return frame.f_lineno
        frame = frame.f_back
    return None


def check_queue(queue: object) -> str:
    """The queue name, or ValueError saying what a queue name may be."""
    if not isinstance(queue, str) or not QUEUE_PATTERN.match(queue):
        raise ValueError(f"queue name {queue!r} is invalid: use lower-case letters, digits, '_' and '-' "
                         "(1 to 64 of them)")
    return queue


def check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise WorkflowDefinitionError(
            f"{kind} name {name!r} is invalid: use letters, digits, '_', '.', '-' (up to 200, "
            "starting with a letter or digit)", line=user_line())
    return name


class Workflow:
    """A named set of tasks and the rules that start, stop and restart them."""

    def __init__(self, name: str, namespace: str | None = None, **config: Any) -> None:
        self.name = check_name("workflow", name)
        # Without a namespace: the one the uploader chose (`-n`, or the configured default), which
        # the worker sets again when it loads the file for a task, so both agree.
        self.namespace = check_name("namespace", namespace or os.environ.get(NAMESPACE_ENV) or "default")
        self.config = config
        self.tasks: dict[str, Operator] = {}
        self.rules: dict[str, list[TaskRule]] = {}
        self.line = user_line()
        created = getattr(_context, "created", None)
        if created is not None:
            created.append(self)

    # -- the `with` block ------------------------------------------------------------------
    def __enter__(self) -> Workflow:
        if current_workflow() is not None:
            raise WorkflowDefinitionError("a Workflow cannot be defined inside another Workflow's block",
                                          line=user_line())
        _context.workflow = self
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _context.workflow = None
        if exc_type is None:
            self.validate()

    # -- rules -----------------------------------------------------------------------------
    def add_rule(self, task: Operator, action: TaskAction, condition: Condition, line: int | None) -> None:
        if not isinstance(condition, Condition):
            raise WorkflowDefinitionError(f"task {task.name!r}: a rule needs a Condition, got "
                                          f"{type(condition).__name__}", line=line)
        try:
            action = TaskAction(action)
        except ValueError:
            raise WorkflowDefinitionError(f"task {task.name!r}: {action!r} is not a TaskAction "
                                          "(START, STOP or RESTART)", line=line) from None
        condition.bind(self.namespace, self.name)  # a task status condition, even nested, learns its key
        self.rules.setdefault(task.name, []).append(TaskRule(condition, action, line))

    def validate(self) -> None:
        """Refuse `start_after` cycles: tasks that wait for each other's success never start."""
        graph: dict[str, set[str]] = {name: set() for name in self.tasks}
        lines: dict[tuple[str, str], int | None] = {}
        for task, rules in self.rules.items():
            for rule in rules:
                if rule.action != TaskAction.START or not isinstance(rule.condition, TaskStatusAllMetCondition):
                    continue
                for c in rule.condition.status_conditions:
                    if c.expect_status == TaskStatus.SUCCESS and c.workflow_name == self.name:
                        graph[task].add(c.task_name)
                        lines[(task, c.task_name)] = rule.line
        cycle = _find_cycle(graph)
        if cycle:
            path = " -> ".join(reversed(cycle))
            at = sorted({ln for a, b in zip(cycle, cycle[1:], strict=False) if (ln := lines.get((a, b)))})
            raise WorkflowDefinitionError(
                f"workflow {self.name!r}: start_after cycle {path}: none of these tasks can ever start",
                line=at[0] if at else self.line)

    # -- views -----------------------------------------------------------------------------
    def subscriptions(self) -> list[tuple[str, str]]:
        """The (namespace, event key) pairs of user events its task rules listen to."""
        found: dict[tuple[str, str], None] = {}
        for rules in self.rules.values():
            for rule in rules:
                for ns, key in rule.condition.subscriptions(self.namespace):
                    if not key.startswith("[task_status_change]."):
                        found[(ns, key)] = None
        return list(found)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "config": {k: repr(v) for k, v in self.config.items()},
            "tasks": [t.describe() for t in self.tasks.values()],
            "rules": {task: [r.describe() for r in rules] for task, rules in self.rules.items()},
            "event_keys": [{"namespace": ns, "key": key} for ns, key in self.subscriptions()],
        }

    def __repr__(self) -> str:
        return f"Workflow({self.namespace}.{self.name}, {len(self.tasks)} tasks)"


def current_workflow() -> Workflow | None:
    return getattr(_context, "workflow", None)


def collect_created(into: list[Workflow] | None) -> None:
    """Record every Workflow created from now on in `into` (None stops recording); the loader uses it
    to find workflows written as `with Workflow(...):` without `as`."""
    _context.created = into


def _find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """A cycle in `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _seconds(value: float | int | timedelta | None, what: str, task: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise WorkflowDefinitionError(f"task {task!r}: {what} must be a number of seconds or a timedelta, "
                                      f"not {value!r}", line=user_line())
    return float(seconds)


class Operator:
    """A task of the workflow whose `with` block it is created in.

    `periodic_expression` ('cron@...' or 'interval@...') restarts it on that schedule while its
    execution runs; `max_retries` and `retry_delay` (seconds or timedelta) retry a failed try;
    `timeout` (seconds or timedelta) fails a try that runs longer. `queue` names the workers that may
    run it: only a worker started with `--queue <queue>` takes its tries (default: "default", the queue
    of every worker started without `--queue`).
    """

    def __init__(self, name: str, *, periodic_expression: str | None = None, max_retries: int = 0,
                 retry_delay: float | timedelta = 0, timeout: float | timedelta | None = None,
                 queue: str = DEFAULT_QUEUE, **config: Any) -> None:
        workflow = current_workflow()
        self.name = check_name("task", name)
        if workflow is None:
            raise WorkflowDefinitionError(f"task {name!r} is created outside a `with Workflow(...)` block",
                                          line=user_line())
        if name in workflow.tasks:
            raise WorkflowDefinitionError(f"workflow {workflow.name!r} already has a task named {name!r}",
                                          line=user_line())
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise WorkflowDefinitionError(f"task {name!r}: max_retries must be a whole number >= 0",
                                          line=user_line())
        try:
            self.queue = check_queue(queue)
        except ValueError as exc:
            raise WorkflowDefinitionError(f"task {name!r}: {exc}", line=user_line()) from None
        self.periodic: Expression | None = None
        if periodic_expression is not None:
            try:
                self.periodic = parse_expression(periodic_expression)
            except WorkflowDefinitionError as exc:
                raise WorkflowDefinitionError(f"task {name!r}: {exc.message}", line=user_line()) from None
        self.periodic_expression = periodic_expression
        self.max_retries = max_retries
        self.retry_delay = _seconds(retry_delay, "retry_delay", name) or 0.0
        self.timeout = _seconds(timeout, "timeout", name)
        self.config = config
        self.workflow = workflow
        self.line = user_line()
        workflow.tasks[name] = self

    # -- rules -----------------------------------------------------------------------------
    def action_on_condition(self, action: TaskAction, condition: Condition) -> None:
        """Take `action` on this task whenever `condition` is met."""
        self.workflow.add_rule(self, action, condition, user_line())

    def action_on_event_received(self, action: TaskAction, event_key: str, namespace: str | None = None) -> None:
        """Take `action` on this task whenever an event with `event_key` arrives (in `namespace`,
        by default the workflow's)."""
        line = user_line()
        try:
            condition = SingleEventCondition(event_key, namespace)
        except WorkflowDefinitionError as exc:
            raise WorkflowDefinitionError(f"task {self.name!r}: {exc.message}", line=line) from None
        self.workflow.add_rule(self, action, condition, line)

    def action_on_task_status(self, action: TaskAction,
                              upstream_task_status_dict: Mapping[Operator, TaskStatus]) -> None:
        """Take `action` when every listed upstream task's latest try has the listed status."""
        line = user_line()
        if not upstream_task_status_dict:
            raise WorkflowDefinitionError(f"task {self.name!r}: action_on_task_status needs at least one task",
                                          line=line)
        conditions = []
        for upstream, status in upstream_task_status_dict.items():
            self._check_same_workflow(upstream, line)
            try:
                conditions.append(TaskStatusCondition(upstream.name, TaskStatus(status)))
            except ValueError:
                raise WorkflowDefinitionError(f"task {self.name!r}: {status!r} is not a TaskStatus",
                                              line=line) from None
        self.workflow.add_rule(self, action, TaskStatusAllMetCondition(conditions), line)

    def start_after(self, tasks: Operator | Sequence[Operator]) -> None:
        """Start this task when all of `tasks` have succeeded."""
        upstream = [tasks] if isinstance(tasks, Operator) else list(tasks)
        line = user_line()
        for t in upstream:
            self._check_same_workflow(t, line)
        self.workflow.add_rule(self, TaskAction.START, TaskStatusAllMetCondition(
            [TaskStatusCondition(t.name, TaskStatus.SUCCESS) for t in upstream]), line)

    def _check_same_workflow(self, other: object, line: int | None) -> None:
        if not isinstance(other, Operator):
            raise WorkflowDefinitionError(f"task {self.name!r}: expected a task, got {type(other).__name__}",
                                          line=line)
        if other.workflow is not self.workflow:
            raise WorkflowDefinitionError(
                f"task {self.name!r} of workflow {self.workflow.name!r} names task {other.name!r} of workflow "
                f"{other.workflow.name!r}: rules can only name tasks of their own workflow", line=line)
        if other is self:
            raise WorkflowDefinitionError(f"task {self.name!r} cannot wait for itself", line=line)

    # -- running (in the task's own process) ------------------------------------------------
    def start(self, context: TaskRunContext) -> None:
        """Run the task; returning normally is SUCCESS, raising is FAILED. The base task does nothing."""

    def await_termination(self, context: TaskRunContext, timeout: float | None = None) -> None:
        """Wait for work `start` left running (an external process, a job); raise if it failed."""

    def stop(self, context: TaskRunContext) -> None:
        """Release what `start` holds when the task is stopped."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "operator": type(self).__name__, "periodic_expression": self.periodic_expression,
                "max_retries": self.max_retries, "retry_delay": self.retry_delay, "timeout": self.timeout,
                "queue": self.queue, "config": {k: repr(v) for k, v in self.config.items()}, "line": self.line}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class TaskRunContext:
    """What a running task knows about itself."""

    def __init__(self, namespace: str, workflow: str, execution_id: str, task: str, try_number: int,
                 working_dir: str) -> None:
        self.namespace = namespace
        self.workflow = workflow
        self.execution_id = execution_id
        self.task = task
        self.try_number = try_number
        self.working_dir = working_dir
