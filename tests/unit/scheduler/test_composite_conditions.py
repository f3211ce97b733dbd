"""MeetAllCondition and MeetAnyCondition around task statuses, events and conditions of the user's own:
in the core, and through a snapshot's own process (no broker)."""

from __future__ import annotations

from pathlib import Path

from aiflow import (
    MeetAllCondition,
    MeetAnyCondition,
    Operator,
    SingleEventCondition,
    TaskAction,
    TaskStatus,
    TaskStatusCondition,
    Workflow,
)
from aiflow.protocol.messages import Event
from aiflow.scheduler import core
from aiflow.scheduler.sandbox import RemoteCondition, SnapshotHost
from aiflow.sdk.status import ExecutionType

SNAP = core.Snapshot(1, "file:///s.zip", "ab" * 32, "flow.py")
T0 = 1_000_000.0


def starts(outputs: list[core.Output]) -> list[tuple[str, int]]:
    return [(o.task, o.try_number) for o in outputs if isinstance(o, core.StartTry)]


def finish(ex: core.Execution, wf: Workflow, task: str, status: str) -> list[core.Output]:
    latest = ex.latest(task)
    assert latest is not None
    core.on_report(ex, wf, task, latest.try_number, "RUNNING", "", "w1", T0)
    return core.on_report(ex, wf, task, latest.try_number, status, "", "w1", T0)


def all_and_any() -> Workflow:
    with Workflow(name="w") as wf:
        Operator("a"), Operator("b")
        c, d = Operator("c"), Operator("d")
        c.action_on_condition(TaskAction.START, MeetAllCondition("a_and_b", [
            TaskStatusCondition("a", TaskStatus.SUCCESS), TaskStatusCondition("b", TaskStatus.SUCCESS)]))
        d.action_on_condition(TaskAction.START, MeetAnyCondition([
            TaskStatusCondition("a", TaskStatus.FAILED), SingleEventCondition("go")]))
    return wf


def test_a_composite_listens_to_the_status_keys_of_the_task_status_conditions_inside_it() -> None:
    wf = all_and_any()
    [rule] = wf.rules["c"]
    assert rule.condition.subscriptions("default") == [("default", "[task_status_change].default.w.a"),
                                                       ("default", "[task_status_change].default.w.b")]
    [rule] = wf.rules["d"]
    assert sorted(rule.condition.expect_event_keys) == ["[task_status_change].default.w.a", "go"]
    assert wf.subscriptions() == [("default", "go")]  # status changes never go through the router


def test_meet_all_of_task_statuses_starts_a_task_once_both_succeeded() -> None:
    wf = all_and_any()
    ex, out = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
    assert sorted(starts(out)) == [("a", 1), ("b", 1)]
    assert starts(finish(ex, wf, "a", "SUCCESS")) == []
    assert ex.states == {"a_and_b": [True, False]}  # its children's flags, in the execution's state
    assert starts(finish(ex, wf, "b", "SUCCESS")) == [("c", 1)]
    assert ex.latest("c").cause == "rule 1 of c (START) on b try 1 SUCCESS"  # type: ignore[union-attr]
    assert "a_and_b" not in ex.states  # it starts over once it fired


def test_meet_any_fires_on_a_task_status_or_on_an_event() -> None:
    wf = all_and_any()
    ex, _ = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
    assert starts(finish(ex, wf, "a", "FAILED")) == [("d", 1)]
    ex, _ = core.start_execution(wf, "e2", SNAP, ExecutionType.MANUAL, "test", T0)
    assert starts(core.on_event(ex, wf, Event("go"), "", T0)) == [("d", 1)]
    assert starts(core.on_event(ex, wf, Event("go", namespace="other"), "", T0)) == []


def test_nested_composites_and_the_original_argument_order() -> None:
    with Workflow(name="w", namespace="ns") as wf:
        Operator("a")
        b = Operator("b")
        # TaskStatusCondition(workflow_name, task_name, namespace, expect_status), as in the original
        inner = MeetAnyCondition([TaskStatusCondition("w", "a", "ns", TaskStatus.SUCCESS),
                                  SingleEventCondition("skip")])
        b.action_on_condition(TaskAction.START, MeetAllCondition("both", [inner, SingleEventCondition("go")]))
    [rule] = wf.rules["b"]
    assert sorted(rule.condition.expect_event_keys) == ["[task_status_change].ns.w.a", "go", "skip"]
    ex, _ = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
    assert starts(core.on_event(ex, wf, Event("go", namespace="ns"), "", T0)) == []
    assert starts(finish(ex, wf, "a", "SUCCESS")) == [("b", 1)]


def test_a_trigger_on_another_workflows_task_status_fires_on_its_status_event() -> None:
    condition = MeetAllCondition("both", [TaskStatusCondition("train", TaskStatus.SUCCESS, "producer", "default"),
                                          SingleEventCondition("approved")])
    ws = core.WorkflowState("default", "consumer")
    key = "[task_status_change].default.producer.train"
    assert core.on_trigger_event(ws, [(1, condition)], Event(key, "RUNNING"), T0) == []
    assert core.on_trigger_event(ws, [(1, condition)], Event("approved"), T0) == []
    assert core.on_trigger_event(ws, [(1, condition)], Event(key, "SUCCESS"), T0) == [1]


FLOW = """
from aiflow import (MeetAllCondition, MeetAnyCondition, Operator, SingleEventCondition, TaskAction, TaskStatus,
                    TaskStatusCondition, Workflow)
from helpers import EveryOther

with Workflow(name="composite") as wf:
    a, b, c, d = Operator("a"), Operator("b"), Operator("c"), Operator("d")
    c.action_on_condition(TaskAction.START, MeetAllCondition("a_and_go", [
        TaskStatusCondition("a", TaskStatus.SUCCESS), SingleEventCondition("go")]))
    d.action_on_condition(TaskAction.START, MeetAnyCondition([
        EveryOther(["tick"]), TaskStatusCondition("b", TaskStatus.FAILED)]))
"""

HELPERS = """
from aiflow import Condition, ValueStateDescriptor

class EveryOther(Condition):
    def is_met(self, event, context):
        state = context.get_state(ValueStateDescriptor("ticks"))
        state.update((state.value() or 0) + 1)
        return state.value() % 2 == 0
"""


def test_composites_work_through_the_snapshots_own_process(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "helpers.py").write_text(HELPERS)
    host = SnapshotHost.for_workflow(tmp_path / "flow.py", "default", "composite", load_timeout=30, memory_mb=0,
                                     condition_timeout=5)
    try:
        wf = host.workflow_object(host.load())
        [rule_c], [rule_d] = wf.rules["c"], wf.rules["d"]
        assert isinstance(rule_c.condition, MeetAllCondition)
        assert rule_c.condition.subscriptions("default") == [("default", "[task_status_change].default.composite.a"),
                                                             ("default", "go")]
        assert isinstance(rule_d.condition, MeetAnyCondition)
        assert isinstance(rule_d.condition.conditions[0], RemoteCondition)

        # MeetAll of built-ins: a's success and a 'go' event, in either order.
        ex, out = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
        assert sorted(starts(out)) == [("a", 1), ("b", 1)]
        assert starts(core.on_event(ex, wf, Event("go"), "", T0)) == []
        assert starts(finish(ex, wf, "a", "SUCCESS")) == [("c", 1)]

        # MeetAny with a condition of the user's, evaluated in its process with the execution's state.
        assert starts(core.on_event(ex, wf, Event("tick"), "", T0)) == []
        assert ex.states["ticks"] == 1
        assert starts(core.on_event(ex, wf, Event("tick"), "", T0)) == [("d", 1)]

        # ... or the built-in task status beside it.
        ex2, _ = core.start_execution(wf, "e2", SNAP, ExecutionType.MANUAL, "test", T0)
        assert starts(finish(ex2, wf, "b", "FAILED")) == [("d", 1)]
    finally:
        host.close()
