"""Conditions: when a rule fires. A condition is evaluated only for events whose (namespace, key) it expects.

Write your own by subclassing `Condition` and implementing `is_met(event, context)`; keep state
between events in `context.get_state(ValueStateDescriptor(name))`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aiflow.errors import WorkflowDefinitionError
from aiflow.sdk.state import Context, ValueState, ValueStateDescriptor
from aiflow.sdk.status import TaskAction, TaskStatus, task_status_event_key

if TYPE_CHECKING:
    from aiflow.protocol.messages import Event


class Condition:
    """Base of every condition.

    `expect_event_keys`: the event keys it listens to. `namespace`: the namespace of those events;
    None means the namespace of the workflow the rule belongs to.
    """

    def __init__(self, expect_event_keys: Sequence[str] | str | None = None, namespace: str | None = None) -> None:
        keys = [expect_event_keys] if isinstance(expect_event_keys, str) else list(expect_event_keys or [])
        for key in keys:
            if not isinstance(key, str) or not key:
                raise WorkflowDefinitionError(f"{type(self).__name__}: event keys must be non-empty strings")
        self.expect_event_keys = keys
        self.namespace = namespace

    def is_met(self, event: Event, context: Context) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must define is_met(event, context)")

    def subscriptions(self, default_namespace: str) -> list[tuple[str, str]]:
        """The (namespace, key) pairs of the events this condition is evaluated for."""
        return [(self.namespace or default_namespace, k) for k in self.expect_event_keys]

    def bind(self, namespace: str, workflow_name: str) -> None:
        """Called when a rule of workflow `namespace.workflow_name` takes this condition: a condition
        whose keys depend on its workflow (a task's status changes) works them out here."""

    def describe(self) -> dict[str, Any]:
        cls = type(self)
        builtin = cls.__module__ == __name__
        return {"type": cls.__name__ if builtin else f"{cls.__module__}.{cls.__qualname__}",
                "event_keys": list(self.expect_event_keys), "namespace": self.namespace}


class SingleEventCondition(Condition):
    """Met by every event with its key."""

    def __init__(self, expect_event_key: str, namespace: str | None = None) -> None:
        super().__init__([expect_event_key], namespace)

    def is_met(self, event: Event, context: Context) -> bool:
        return True


class _Composite(Condition):
    """A condition made of others. It listens to the union of its children's events, and evaluates a
    child only for the events that child expects, in the same context (the rule's states and task
    statuses). Binding it to a workflow binds its children, so a `TaskStatusCondition` inside it
    learns its task's status key."""

    def __init__(self, conditions: Sequence[Condition]) -> None:
        conditions = list(conditions)
        if not conditions or not all(isinstance(c, Condition) for c in conditions):
            raise WorkflowDefinitionError(f"{type(self).__name__} needs a non-empty list of conditions")
        super().__init__(_union(c.expect_event_keys for c in conditions))
        self.conditions = conditions
        self.default_namespace: str | None = None  # the namespace of the workflow it is bound to

    def bind(self, namespace: str, workflow_name: str) -> None:
        for c in self.conditions:
            c.bind(namespace, workflow_name)
        self.expect_event_keys = _union(c.expect_event_keys for c in self.conditions)
        self.default_namespace = namespace

    def subscriptions(self, default_namespace: str) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for c in self.conditions:
            seen.update(dict.fromkeys(c.subscriptions(default_namespace)))
        return list(seen)

    def expects(self, child: Condition, event: Event) -> bool:
        """Whether `child` listens to this event (its own namespace, else its workflow's; a trigger's
        condition is never bound, and the event passed its namespace check already)."""
        return (event.namespace, event.key) in child.subscriptions(self.default_namespace or event.namespace)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "conditions": [c.describe() for c in self.conditions]}


class MeetAllCondition(_Composite):
    """Met when every child condition has been met by its latest matching event.

    Stateful: it remembers, in a state called `name` (unique within the workflow), which children
    are met. Unlike the original, the memory is cleared once it fires, so a second firing needs
    every child met again.
    """

    def __init__(self, name: str, conditions: Sequence[Condition]) -> None:
        super().__init__(conditions)
        if not isinstance(name, str) or not name:
            raise WorkflowDefinitionError("MeetAllCondition needs a name for its state")
        self.name = name

    def is_met(self, event: Event, context: Context) -> bool:
        state = context.get_state(ValueStateDescriptor(self.name))
        assert isinstance(state, ValueState)
        flags = list(state.value() or [False] * len(self.conditions))
        if len(flags) != len(self.conditions):  # a state of another shape: start over
            flags = [False] * len(self.conditions)
        for i, child in enumerate(self.conditions):
            if self.expects(child, event):
                flags[i] = bool(child.is_met(event, context))
        if all(flags):
            state.clear()
            return True
        state.update(flags)
        return False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "name": self.name}


class MeetAnyCondition(_Composite):
    """Met when a child condition that expects the event is met by it."""

    def is_met(self, event: Event, context: Context) -> bool:
        return any(self.expects(c, event) and c.is_met(event, context) for c in self.conditions)


class TaskStatusCondition(Condition):
    """Met when the latest try of `task_name` in the same execution has `expect_status`.

    Evaluated whenever that task's status changes (event key `[task_status_change].ns.workflow.task`),
    also inside `MeetAllCondition` and `MeetAnyCondition`. `workflow_name` and `namespace` default to
    the rule's own workflow when it is added; a workflow trigger's must name them. On its own status
    event it reads the status the event carries (so a trigger, which has no execution, can use it);
    otherwise the latest try's. The original's argument order, `(workflow_name, task_name, namespace,
    expect_status)`, is taken too.
    """

    def __init__(self, task_name: str, expect_status: TaskStatus | str, workflow_name: str | None = None,
                 namespace: str | TaskStatus | None = None) -> None:
        if isinstance(namespace, TaskStatus) and not isinstance(expect_status, TaskStatus):
            # The original AIFlow's order: TaskStatusCondition(workflow_name, task_name, namespace, expect_status).
            task_name, expect_status, workflow_name, namespace = str(expect_status), namespace, task_name, workflow_name
        if not isinstance(task_name, str) or not task_name:
            raise WorkflowDefinitionError(f"TaskStatusCondition needs a task name, got {task_name!r}")
        try:
            status = TaskStatus(expect_status)
        except ValueError:
            raise WorkflowDefinitionError(f"TaskStatusCondition of {task_name!r}: {expect_status!r} is not a "
                                          "TaskStatus") from None
        assert not isinstance(namespace, TaskStatus)
        super().__init__([], namespace)
        self.task_name = task_name
        self.expect_status = status
        self.workflow_name = workflow_name
        if workflow_name is not None and namespace is not None:
            self.expect_event_keys = [task_status_event_key(namespace, workflow_name, task_name)]

    def bind(self, namespace: str, workflow_name: str) -> None:
        self.namespace = self.namespace or namespace
        self.workflow_name = self.workflow_name or workflow_name
        self.expect_event_keys = [task_status_event_key(self.namespace, self.workflow_name, self.task_name)]

    def is_met(self, event: Event, context: Context) -> bool:
        if event.key in self.expect_event_keys and event.value in TaskStatus.__members__:
            return TaskStatus(event.value) == self.expect_status
        return context.get_task_status(self.task_name) == self.expect_status

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "task": self.task_name, "status": self.expect_status.value}


class TaskStatusAllMetCondition(_Composite):
    """Met when every listed task's latest try has its expected status (what `start_after` builds)."""

    def __init__(self, condition_list: Sequence[TaskStatusCondition]) -> None:
        super().__init__(condition_list)
        self.status_conditions: list[TaskStatusCondition] = list(condition_list)

    def is_met(self, event: Event, context: Context) -> bool:
        return all(c.is_met(event, context) for c in self.conditions)


def _union(keys: Iterable[list[str]]) -> list[str]:
    return list(dict.fromkeys(k for group in keys for k in group))


class TaskRule:
    """A condition and the action it triggers on one task. `line` is where the rule was written."""

    def __init__(self, condition: Condition, action: TaskAction, line: int | None = None) -> None:
        self.condition = condition
        self.action = TaskAction(action)
        self.line = line

    def trigger(self, event: Event, context: Context) -> TaskAction | None:
        return self.action if self.condition.is_met(event, context) else None

    def describe(self) -> dict[str, Any]:
        return {"action": self.action.value, "condition": self.condition.describe(), "line": self.line}


class WorkflowRule:
    """A workflow trigger: starts a new execution of its workflow when the condition is met."""

    def __init__(self, condition: Condition) -> None:
        if not isinstance(condition, Condition):
            raise WorkflowDefinitionError("WorkflowRule needs a Condition")
        self.condition = condition

    def trigger(self, event: Event, context: Context) -> bool:
        return bool(self.condition.is_met(event, context))

    def describe(self) -> dict[str, Any]:
        return {"condition": self.condition.describe()}


def condition_to_spec(condition: Condition) -> dict[str, Any]:
    """A JSON description from which `condition_from_spec` builds the same condition in another process.

    Built-in conditions are described by their parameters. A condition class of your own must be
    importable where the scheduler runs (a module on its path, not `__main__`), and its attributes
    JSON-serialisable; it is rebuilt from them without calling `__init__`.
    """
    if type(condition) is SingleEventCondition:
        return {"type": "SingleEventCondition", "key": condition.expect_event_keys[0], "namespace": condition.namespace}
    if type(condition) is MeetAnyCondition:
        return {"type": "MeetAnyCondition", "conditions": [condition_to_spec(c) for c in condition.conditions]}
    if type(condition) is MeetAllCondition:
        return {"type": "MeetAllCondition", "name": condition.name,
                "conditions": [condition_to_spec(c) for c in condition.conditions]}
    if type(condition) is TaskStatusCondition:
        return {"type": "TaskStatusCondition", "task": condition.task_name, "status": condition.expect_status.value,
                "workflow": condition.workflow_name, "namespace": condition.namespace}
    cls = type(condition)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise WorkflowDefinitionError(f"{cls.__qualname__} is defined in a script: put it in an importable module "
                                      "so the scheduler can rebuild it")
    try:
        state = json.loads(json.dumps(vars(condition)))
    except (TypeError, ValueError):
        raise WorkflowDefinitionError(f"{cls.__qualname__}: its attributes must be JSON-serialisable to be "
                                      "sent to the scheduler") from None
    return {"type": "class", "class": f"{cls.__module__}:{cls.__qualname__}", "state": state}


def condition_from_spec(spec: dict[str, Any]) -> Condition:
    kind = spec["type"]
    if kind == "SingleEventCondition":
        return SingleEventCondition(spec["key"], spec.get("namespace"))
    if kind == "MeetAnyCondition":
        return MeetAnyCondition([condition_from_spec(c) for c in spec["conditions"]])
    if kind == "MeetAllCondition":
        return MeetAllCondition(spec["name"], [condition_from_spec(c) for c in spec["conditions"]])
    if kind == "TaskStatusCondition":
        return TaskStatusCondition(spec["task"], TaskStatus(spec["status"]), spec.get("workflow"),
                                   spec.get("namespace"))
    if kind == "class":
        module_name, _, qualname = spec["class"].partition(":")
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        condition = target.__new__(target)
        condition.__dict__.update(spec["state"])
        return condition
    raise WorkflowDefinitionError(f"unknown condition type {kind!r}")
