"""A workflow snapshot's own process: it loads the user's code, so the scheduler never does.

`python -m aiflow.sdk.host [--memory-mb N] FILE NAMESPACE WORKFLOW` (started by the scheduler,
aiflow/scheduler/sandbox.py) caps its own address space, loads the workflow file and answers on
its real stdout with one JSON line: the workflow as data — tasks, and each rule's action and
condition as a spec — or the error, with the file's line. Built-in conditions are described by
their parameters and evaluated in the scheduler; a condition of the user's own (a `Condition`
subclass, wherever it nests) is described as `remote`, with the events it listens to, and stays
here. The process then answers one JSON line per request on stdin — evaluate remote condition N
for this event, with these rule states and task statuses — with whether it is met and the states
as it left them. It ends when stdin closes; a snapshot with no remote condition ends at once.

`python -m aiflow.sdk.host [--memory-mb N] --conditions SPECS NAMESPACE` does the same for the
conditions of a workflow's triggers (SPECS: a JSON list of condition specs, as `condition_to_spec`
writes them): it imports their classes and answers with each one as a spec (null, with the reason
under "errors", for one it cannot rebuild), then evaluates the remote ones.

Everything the file prints goes to stderr, so stdout carries only answers. Each snapshot has a
process, and so its own modules: two snapshots' `helpers.py` never meet.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import traceback
from typing import IO, Any

from aiflow.errors import AIFlowError, WorkflowFileError
from aiflow.process import stop_with_parent
from aiflow.sdk.conditions import (
    Condition,
    MeetAllCondition,
    MeetAnyCondition,
    SingleEventCondition,
    TaskStatusAllMetCondition,
    TaskStatusCondition,
    condition_from_spec,
)
from aiflow.sdk.loader import answers_and_limits, load_workflow
from aiflow.sdk.state import MemoryContext, check_json
from aiflow.sdk.status import TaskStatus
from aiflow.sdk.workflow import Workflow

_AIFLOW_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class _Specs:
    """Condition specs for the scheduler. Each distinct condition object gets one `ref`, so a
    condition shared by several rules stays one object (and is evaluated once per event) there too."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.refs: dict[int, int] = {}
        self.remote: list[Condition] = []

    def of(self, c: Condition) -> dict[str, Any]:
        first = id(c) not in self.refs
        ref = self.refs.setdefault(id(c), len(self.refs))
        if not first:
            return {"ref": ref}
        kind = type(c)
        spec: dict[str, Any]
        if kind is SingleEventCondition:
            spec = {"type": "SingleEventCondition", "key": c.expect_event_keys[0], "namespace": c.namespace}
        elif kind is TaskStatusCondition:
            assert isinstance(c, TaskStatusCondition)
            spec = {"type": "TaskStatusCondition", "task": c.task_name, "status": c.expect_status.value,
                    "workflow": c.workflow_name, "namespace": c.namespace}
        elif kind is TaskStatusAllMetCondition:
            assert isinstance(c, TaskStatusAllMetCondition)
            spec = {"type": "TaskStatusAllMetCondition", "conditions": [self.of(x) for x in c.status_conditions]}
        elif kind is MeetAllCondition:
            assert isinstance(c, MeetAllCondition)
            spec = {"type": "MeetAllCondition", "name": c.name, "conditions": [self.of(x) for x in c.conditions]}
        elif kind is MeetAnyCondition:
            assert isinstance(c, MeetAnyCondition)
            spec = {"type": "MeetAnyCondition", "conditions": [self.of(x) for x in c.conditions]}
        else:
            self.remote.append(c)
            spec = {"type": "remote", "id": len(self.remote) - 1, "class": f"{kind.__module__}.{kind.__qualname__}",
                    "event_keys": list(getattr(c, "expect_event_keys", [])), "namespace": getattr(c, "namespace", None),
                    "subscriptions": [list(s) for s in c.subscriptions(self.namespace)]}
        return {"ref": ref, **spec}


def describe_for_scheduler(wf: Workflow) -> tuple[dict[str, Any], list[Condition]]:
    """The workflow as data the scheduler rebuilds it from, and its remote conditions by id."""
    specs = _Specs(wf.namespace)
    description = {
        "name": wf.name, "namespace": wf.namespace,
        "tasks": [{"name": op.name, "periodic_expression": op.periodic_expression, "max_retries": op.max_retries,
                   "retry_delay": op.retry_delay, "timeout": op.timeout, "queue": op.queue}
                  for op in wf.tasks.values()],
        "rules": {task: [{"action": r.action.value, "line": r.line, "condition": specs.of(r.condition)}
                         for r in rules] for task, rules in wf.rules.items()},
    }
    return description, specs.remote


def describe_conditions(specs: list[dict[str, Any]], namespace: str) -> tuple[dict[str, Any], list[Condition]]:
    """Trigger conditions rebuilt from their specs (importing the classes they name), described for the
    scheduler like a workflow's rules; one that cannot be rebuilt is None, with its reason under errors."""
    described = _Specs(namespace)
    conditions: list[dict[str, Any] | None] = []
    errors: dict[str, str] = {}
    for index, spec in enumerate(specs):
        try:
            conditions.append(described.of(condition_from_spec(spec)))
        except Exception as exc:  # a class that is missing, or whose module raises at import
            conditions.append(None)
            errors[str(index)] = f"{type(exc).__name__}: {exc}"
    return {"conditions": conditions, "errors": errors}, described.remote


def _answer(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _evaluate(remote: list[Condition], request: dict[str, Any]) -> dict[str, Any]:
    from aiflow.protocol.messages import Event

    condition = remote[int(request["condition"])]
    event = Event.decode(base64.b64decode(request["event"]))
    context = MemoryContext(dict(request["states"]), {t: TaskStatus(s) for t, s in request["statuses"].items()})
    met = bool(condition.is_met(event, context))
    states = dict(context.states)
    for name, value in states.items():  # changed in place, after `value()`, without `update`
        check_json(name, value)
    return {"met": met, "states": states}


def _error(exc: BaseException) -> str:
    """The error of a user's condition, from the line of the user's code that raised it (the last frame
    outside aiflow: a `state.update(...)`, say)."""
    where = ""
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if not frame.f_code.co_filename.startswith(_AIFLOW_DIR):
            where = f"{os.path.basename(frame.f_code.co_filename)}:{lineno}: "
    return f"{where}{exc}" if isinstance(exc, AIFlowError) else f"{where}{type(exc).__name__}: {exc}"


def main(argv: list[str]) -> int:
    # The file may print as it loads and as it evaluates: the real stdout carries the answers alone.
    out, argv = answers_and_limits(argv)
    stop_with_parent(0, logging.getLogger("aiflow.sdk.host"))  # a SIGKILLed scheduler leaves nothing running
    if len(argv) == 3 and argv[0] == "--conditions":
        specs, namespace = json.loads(argv[1]), argv[2]
        sys.path.insert(0, os.getcwd())  # the classes import as they did where the trigger was added
        conditions, remote = describe_conditions(specs, namespace)
        _answer(out, conditions)
    elif len(argv) == 3:
        path, namespace, name = argv
        try:
            wf = load_workflow(path, namespace, name)
            description, remote = describe_for_scheduler(wf)
        except WorkflowFileError as exc:
            _answer(out, {"error": str(exc)})
            return 1
        except Exception as exc:  # a condition of the user's whose subscriptions() raised
            _answer(out, {"error": f"{path}: {type(exc).__name__}: {exc}"})
            return 1
        _answer(out, {"workflow": description})
    else:
        _answer(out, {"error": "usage: python -m aiflow.sdk.host [--memory-mb N] FILE NAMESPACE WORKFLOW | "
                               "--conditions SPECS NAMESPACE"})
        return 2
    if not remote:
        return 0
    for line in sys.stdin:
        try:
            answer = _evaluate(remote, json.loads(line))
        except Exception as exc:  # the user's condition raised: the scheduler treats it as not met
            answer = {"error": _error(exc)}
        _answer(out, answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
