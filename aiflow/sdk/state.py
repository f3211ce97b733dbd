"""Rule state and the context a condition is evaluated in.

A condition may keep state between events (`context.get_state(ValueStateDescriptor("count"))`).
Task rules get state scoped to their workflow execution, workflow triggers state scoped to their
workflow. The scheduler persists it with its decisions, so it survives restarts; values must
therefore be JSON-serialisable (numbers, strings, booleans, None, lists and dicts of them).
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from aiflow.errors import AIFlowError
from aiflow.sdk.status import TaskStatus


class StateDescriptor:
    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise AIFlowError("a state needs a non-empty name")
        self.name = name


class ValueStateDescriptor(StateDescriptor):
    """Describes a state holding one value."""


class State:
    def clear(self) -> None:
        raise NotImplementedError


class ValueState(State):
    """One value, kept in the mapping its context persists."""

    def __init__(self, name: str, store: MutableMapping[str, Any]) -> None:
        self.name = name
        self._store = store

    def value(self) -> Any:
        return self._store.get(self.name)

    def update(self, value: Any) -> None:
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise AIFlowError(f"state {self.name!r}: {type(value).__name__} values cannot be stored; "
                              "use JSON-serialisable values (numbers, strings, lists, dicts)") from None
        self._store[self.name] = value

    def clear(self) -> None:
        self._store.pop(self.name, None)


class Context:
    """What a condition can ask while it is evaluated."""

    def get_state(self, state_descriptor: StateDescriptor) -> State:
        raise NotImplementedError

    def get_task_status(self, task_name: str) -> TaskStatus | None:
        raise NotImplementedError


class MemoryContext(Context):
    """A context over plain dicts: what the scheduler core persists, and what tests use."""

    def __init__(self, states: MutableMapping[str, Any] | None = None,
                 task_statuses: MutableMapping[str, TaskStatus] | None = None) -> None:
        self.states: MutableMapping[str, Any] = {} if states is None else states
        self.task_statuses: MutableMapping[str, TaskStatus] = {} if task_statuses is None else task_statuses

    def get_state(self, state_descriptor: StateDescriptor) -> State:
        if not isinstance(state_descriptor, ValueStateDescriptor):
            raise AIFlowError(f"unsupported state descriptor {type(state_descriptor).__name__}: "
                              "use ValueStateDescriptor")
        return ValueState(state_descriptor.name, self.states)

    def get_task_status(self, task_name: str) -> TaskStatus | None:
        return self.task_statuses.get(task_name)
