"""What the core passes over, and how the user learns it: rules of a disabled workflow, a START command
on a live task, a rule whose condition fails (a state that is not JSON among them). No broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiflow import Condition, Operator, TaskAction, ValueStateDescriptor, Workflow
from aiflow.errors import AIFlowError
from aiflow.protocol.messages import Event
from aiflow.scheduler import core
from aiflow.scheduler.sandbox import SnapshotHost
from aiflow.sdk.state import MemoryContext
from aiflow.sdk.status import ExecutionType

SNAP = core.Snapshot(1, "file:///s.zip", "ab" * 32, "flow.py")
T0 = 1_000_000.0
SETTINGS = core.Settings()


def starts(outputs: list[core.Output]) -> list[tuple[str, int]]:
    return [(o.task, o.try_number) for o in outputs if isinstance(o, core.StartTry)]


def stops(outputs: list[core.Output]) -> list[tuple[str, int]]:
    return [(o.task, o.try_number) for o in outputs if isinstance(o, core.StopTry)]


def report(ex: core.Execution, wf: Workflow, task: str, status: str, rules: bool = True) -> list[core.Output]:
    latest = ex.latest(task)
    assert latest is not None
    return core.on_report(ex, wf, task, latest.try_number, status, "", "w1", T0, rules=rules)


def reactive() -> Workflow:
    with Workflow(name="w") as wf:
        stream = Operator("stream")  # starts with the execution and runs on
        train = Operator("train")
        deploy = Operator("deploy")
        ticker = Operator("ticker", periodic_expression="interval@0 0 0 10")
        train.action_on_event_received(TaskAction.START, "data")
        stream.action_on_event_received(TaskAction.STOP, "halt")
        deploy.start_after(train)
        ticker.action_on_event_received(TaskAction.START, "never")
    return wf


# -- a disabled workflow ---------------------------------------------------------------------------
def test_while_its_workflow_is_disabled_an_executions_rules_fire_on_nothing() -> None:
    wf = reactive()
    ex, out = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
    assert starts(out) == [("stream", 1)]
    report(ex, wf, "stream", "RUNNING")
    before = ex.to_dict()

    # Disabled: events start and stop nothing, and change no state.
    assert core.on_event(ex, wf, Event("data"), "", T0, rules=False) == []
    assert core.on_event(ex, wf, Event("halt"), "", T0, rules=False) == []
    assert ex.to_dict() == before

    # A START command still runs the task; its success starts nothing through start_after.
    assert starts(core.on_command(ex, wf, "START_TASK", "train", T0, rules=False)) == [("train", 1)]
    report(ex, wf, "train", "RUNNING", rules=False)
    out = report(ex, wf, "train", "SUCCESS", rules=False)
    assert starts(out) == [] and ex.latest("deploy") is None
    assert ex.status == "RUNNING" and ex.latest("stream").status == "RUNNING"  # type: ignore[union-attr]

    # Time goes on: periodic tasks restart, as in the original (a task's own schedule is not a rule).
    out = core.on_tick(ex, wf, T0 + 11, SETTINGS, rules=False)
    assert starts(out) == [("ticker", 1)]

    # Enabled again: the rules listen again.
    assert stops(core.on_event(ex, wf, Event("halt"), "", T0 + 12)) == [("stream", 1)]


# -- a START command on a live task ---------------------------------------------------------------
def test_a_start_command_on_a_live_task_is_passed_over_and_the_execution_says_why() -> None:
    wf = reactive()
    ex, _ = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
    report(ex, wf, "stream", "RUNNING")
    assert core.on_command(ex, wf, "START_TASK", "stream", T0) == []
    assert ex.message == ("command START_TASK ignored: task 'stream' is RUNNING (try 1): stop it first, "
                          "or restart it")
    assert [t.try_number for t in ex.tries["stream"]] == [1]
    assert core.on_command(ex, wf, "STOP_TASK", "train", T0) == []
    assert ex.message == "command STOP_TASK ignored: task 'train' has no live try to stop"
    # A rule's START on a live task is the original's ordinary no-op: nothing to say.
    ex.message = ""
    report(ex, wf, "stream", "SUCCESS")
    core.on_command(ex, wf, "START_TASK", "train", T0)
    assert core.on_event(ex, wf, Event("data"), "", T0) == [] and ex.message == ""


# -- states that are not JSON ----------------------------------------------------------------------
class Keeps(Condition):
    """Keeps a value of the kind it is given in its state."""

    def __init__(self, value: object) -> None:
        super().__init__(["n"])
        self.value = value

    def is_met(self, event: Event, context: MemoryContext) -> bool:  # type: ignore[override]
        context.get_state(ValueStateDescriptor("kept")).update(self.value)  # type: ignore[attr-defined]
        return True


def test_a_state_holds_json_and_says_what_is_not() -> None:
    state = MemoryContext().get_state(ValueStateDescriptor("s"))
    state.update({"pair": (1, 2)})  # type: ignore[attr-defined]
    assert state.value() == {"pair": [1, 2]}  # type: ignore[attr-defined]  # as a restart gives it back
    with pytest.raises(AIFlowError, match=r"state 's' cannot be stored: a set at \['seen'\] is not JSON"):
        state.update({"seen": {1}})  # type: ignore[attr-defined]
    with pytest.raises(AIFlowError, match=r"state 's' cannot be stored: an int key 1 at \[0\] is not JSON"):
        state.update([{1: "a"}])  # type: ignore[attr-defined]
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(AIFlowError, match="contains itself"):
        state.update(loop)  # type: ignore[attr-defined]


def test_a_rule_whose_condition_keeps_a_value_that_is_not_json_is_a_rule_error_on_the_execution() -> None:
    class Point:
        pass

    with Workflow(name="w") as wf:
        Operator("keep")
        Operator("t").action_on_condition(TaskAction.START, Keeps(Point()))
    ex, _ = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
    assert core.on_event(ex, wf, Event("n"), "", T0) == []  # not met
    assert ex.message == ("rule 1 of task 't' failed on event 'n', treated as not met: state 'kept' cannot be "
                          "stored: a Point is not JSON (a state holds numbers, strings, booleans, None, and lists "
                          "and dicts with string keys of them)")
    assert ex.states == {}


FLOW = """
from aiflow import Operator, TaskAction, Workflow
from helpers import Remembers, Collects

with Workflow(name="stateful") as wf:
    Operator("keep")
    Operator("a").action_on_condition(TaskAction.START, Remembers(["n"]))
    Operator("b").action_on_condition(TaskAction.START, Collects(["m"]))
"""

HELPERS = """
from aiflow import Condition, ValueStateDescriptor

class Consumer:
    pass

class Remembers(Condition):
    def is_met(self, event, context):
        state = context.get_state(ValueStateDescriptor("consumer"))
        state.update(Consumer())
        return True

class Collects(Condition):
    def is_met(self, event, context):
        state = context.get_state(ValueStateDescriptor("seen"))
        if state.value() is None:
            state.update([])
        state.value().append({event.key})  # changed in place, without update
        return True
"""


def test_a_users_condition_keeping_a_value_that_is_not_json_names_the_state_the_type_and_the_line(
        tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "helpers.py").write_text(HELPERS)
    host = SnapshotHost.for_workflow(tmp_path / "flow.py", "default", "stateful", load_timeout=30, memory_mb=0,
                                     condition_timeout=5)
    try:
        wf = host.workflow_object(host.load())
        ex, _ = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
        assert core.on_event(ex, wf, Event("n"), "", T0) == []
        assert ex.message.startswith("rule 1 of task 'a' failed on event 'n', treated as not met: helpers.py:10: "
                                     "state 'consumer' cannot be stored: a Consumer is not JSON")
        assert core.on_event(ex, wf, Event("m"), "", T0) == []
        assert ex.message.startswith("rule 1 of task 'b' failed on event 'm', treated as not met: state 'seen' "
                                     "cannot be stored: a set at [0] is not JSON")
        assert ex.states == {}  # nothing of either was kept
    finally:
        host.close()
