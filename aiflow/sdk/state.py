"""Rule state and the context a condition is evaluated in.

A condition may keep state between events (`context.get_state(ValueStateDescriptor("count"))`).
Task rules get state scoped to their workflow execution, workflow triggers state scoped to their
workflow. The scheduler persists it with its decisions, so it survives restarts; values must
therefore be JSON: numbers, strings, booleans, None, and lists and dicts (with string keys) of them.
`update` stores the value as JSON gives it back — a tuple comes back a list — and refuses anything
else (an object of a class, a set, bytes, a numpy number) with an error naming the state and the type.
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
        check_json(self.name, value)
        self._store[self.name] = json.loads(json.dumps(value))  # what a restart would give back

    def clear(self) -> None:
        self._store.pop(self.name, None)


def not_json(value: Any, where: str = "") -> str | None:
    """What in `value` is not JSON ("a Consumer", "a set at ['seen']"), or None if it all is."""
    at = f" at {where}" if where else ""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, (list, tuple)):
        return next((found for i, v in enumerate(value) if (found := not_json(v, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{_a(type(k).__name__)} key {k!r}{at}"
            if found := not_json(v, f"{where}[{k!r}]"):
                return found
        return None
    return f"{_a(type(value).__name__)}{at}"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def check_json(name: str, value: Any) -> None:
    """Refuse a state value that is not JSON, naming the state and what in it is not."""
    try:
        found = not_json(value)
    except RecursionError:
        found = "a value that contains itself (or is nested too deep)"
    if found is not None:
        raise AIFlowError(f"state {name!r} cannot be stored: {found} is not JSON (a state holds numbers, strings, "
                          "booleans, None, and lists and dicts with string keys of them)")


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
