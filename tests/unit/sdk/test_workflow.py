"""Defining workflows: rules, validation and the description stored at upload. No broker, no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiflow import (
    BashOperator,
    Condition,
    MeetAllCondition,
    MeetAnyCondition,
    Operator,
    PythonOperator,
    SingleEventCondition,
    TaskAction,
    TaskStatus,
    ValueStateDescriptor,
    Workflow,
    WorkflowRule,
)
from aiflow.errors import WorkflowDefinitionError, WorkflowFileError
from aiflow.protocol.messages import Event
from aiflow.sdk.conditions import TaskStatusAllMetCondition
from aiflow.sdk.expressions import Cron, Interval, parse_expression
from aiflow.sdk.loader import load_workflows
from aiflow.sdk.state import MemoryContext

REPO = Path(__file__).resolve().parents[3]


def noop() -> None:
    pass


def test_tasks_and_rules_are_recorded_in_order() -> None:
    with Workflow(name="wf") as wf:
        a = PythonOperator(name="a", python_callable=noop)
        b = PythonOperator(name="b", python_callable=noop)
        c = BashOperator(name="c", bash_command="echo hi", env={"X": "1"})
        b.action_on_event_received(action=TaskAction.START, event_key="go")
        b.action_on_event_received(action=TaskAction.STOP, event_key="halt", namespace="ops")
        c.start_after([a, b])
    assert list(wf.tasks) == ["a", "b", "c"] and wf.namespace == "default"
    assert [r.action for r in wf.rules["b"]] == [TaskAction.START, TaskAction.STOP]
    assert wf.subscriptions() == [("default", "go"), ("ops", "halt")]
    described = wf.describe()
    assert [t["operator"] for t in described["tasks"]] == ["PythonOperator", "PythonOperator", "BashOperator"]
    [rule] = described["rules"]["c"]
    assert rule["action"] == "START" and rule["condition"]["type"] == "TaskStatusAllMetCondition"
    assert [c["task"] for c in rule["condition"]["conditions"]] == ["a", "b"]
    assert rule["line"] is not None


def test_start_after_waits_for_success_of_every_upstream() -> None:
    with Workflow(name="wf") as wf:
        a, b = Operator("a"), Operator("b")
        c = Operator("c")
        c.start_after([a, b])
    [rule] = wf.rules["c"]
    event = Event(key="[task_status_change].default.wf.a")
    assert rule.trigger(event, MemoryContext(task_statuses={"a": TaskStatus.SUCCESS})) is None
    assert rule.trigger(event, MemoryContext(task_statuses={"a": TaskStatus.SUCCESS,
                                                            "b": TaskStatus.FAILED})) is None
    assert rule.trigger(event, MemoryContext(task_statuses={"a": TaskStatus.SUCCESS,
                                                            "b": TaskStatus.SUCCESS})) == TaskAction.START
    assert rule.condition.expect_event_keys == ["[task_status_change].default.wf.a",
                                                "[task_status_change].default.wf.b"]


def test_action_on_task_status_with_any_status() -> None:
    with Workflow(name="wf") as wf:
        stream, batch = Operator("stream"), Operator("batch")
        stream.action_on_task_status(TaskAction.STOP, {batch: TaskStatus.FAILED})
    [rule] = wf.rules["stream"]
    assert isinstance(rule.condition, TaskStatusAllMetCondition)
    assert rule.trigger(Event(key="x"), MemoryContext(task_statuses={"batch": TaskStatus.FAILED})) == TaskAction.STOP


def test_operator_outside_a_workflow_block_is_refused_with_its_line() -> None:
    with pytest.raises(WorkflowDefinitionError, match="outside a `with Workflow") as info:
        PythonOperator(name="lonely", python_callable=noop)
    assert info.value.line is not None


def test_duplicate_task_names_are_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match="already has a task named 'a'"):
        with Workflow(name="wf"):
            Operator("a")
            Operator("a")


def test_rule_naming_a_task_of_another_workflow_is_refused() -> None:
    with Workflow(name="first"):
        foreign = Operator("foreign")
    with pytest.raises(WorkflowDefinitionError, match="names task 'foreign' of workflow 'first'"):
        with Workflow(name="second"):
            Operator("mine").start_after(foreign)


def test_start_after_cycle_is_refused_naming_the_tasks() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"start_after cycle a -> b -> c -> a|cycle"):
        with Workflow(name="wf"):
            a, b, c = Operator("a"), Operator("b"), Operator("c")
            b.start_after(a)
            c.start_after(b)
            a.start_after(c)


def test_status_rules_other_than_start_on_success_may_loop() -> None:
    with Workflow(name="wf") as wf:
        a, b = Operator("a"), Operator("b")
        a.action_on_task_status(TaskAction.RESTART, {b: TaskStatus.SUCCESS})
        b.start_after(a)
    assert set(wf.rules) == {"a", "b"}


def test_nested_workflows_are_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match="inside another"):
        with Workflow(name="outer"):
            with Workflow(name="inner"):
                pass


@pytest.mark.parametrize("bad", ["", "has space", "semi;colon", "../up", 5])
def test_bad_names_are_refused(bad: object) -> None:
    with pytest.raises(WorkflowDefinitionError, match="name"):
        Workflow(name=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"max_retries": -1}, {"retry_delay": "soon"}, {"timeout": -5},
                                    {"periodic_expression": "every hour"}])
def test_bad_operator_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(WorkflowDefinitionError, match="task 't'"):
        with Workflow(name="wf"):
            Operator("t", **kwargs)  # type: ignore[arg-type]


def test_python_operator_needs_a_callable_and_bash_a_command() -> None:
    with Workflow(name="wf"):
        with pytest.raises(WorkflowDefinitionError, match="python_callable must be callable"):
            PythonOperator(name="p", python_callable="noop")  # type: ignore[arg-type]
        with pytest.raises(WorkflowDefinitionError, match="bash_command"):
            BashOperator(name="b", bash_command="  ")


@pytest.mark.parametrize(("text", "expected"), [
    ("cron@*/5 * * * *", Cron("*/5 * * * *")),
    ("cron@0 0 * * 1-5", Cron("0 0 * * 1-5")),
    ("interval@0 0 10 0", Interval(parse_expression("interval@0 0 10 0").every)),
    ("interval@1 2 3 4", parse_expression("interval@1 2 3 4")),
])
def test_valid_expressions(text: str, expected: object) -> None:
    assert parse_expression(text) == expected


def test_interval_values() -> None:
    every = parse_expression("interval@1 2 3 4")
    assert isinstance(every, Interval) and every.every.total_seconds() == 86400 + 7200 + 180 + 4
    assert str(every) == "interval@1 2 3 4"
    assert parse_expression("interval@ 0 10 0") == parse_expression("interval@0 0 10 0")


@pytest.mark.parametrize("text", ["cron@* * *", "cron@61 * * * *", "interval@0 0 10", "interval@0 0 -1 0",
                                  "interval@0 0 0 0", "interval@a b c d", "hourly", "cron:* * * * *"])
def test_malformed_expressions_are_refused(text: str) -> None:
    with pytest.raises(WorkflowDefinitionError):
        parse_expression(text)


def test_periodic_task_keeps_its_expression() -> None:
    with Workflow(name="wf"):
        t = Operator("t", periodic_expression="interval@0 0 0 30", max_retries=2, retry_delay=5, timeout=60)
    assert isinstance(t.periodic, Interval) and t.max_retries == 2 and t.retry_delay == 5.0 and t.timeout == 60.0


class Counter(Condition):
    """Sums event values; met once the sum reaches 10."""

    def __init__(self) -> None:
        super().__init__(expect_event_keys=["number"])

    def is_met(self, event: Event, context) -> bool:  # type: ignore[no-untyped-def]
        state = context.get_state(ValueStateDescriptor("sum"))
        total = (state.value() or 0) + int(event.value or 0)
        state.update(total)
        return total >= 10


def test_custom_condition_keeps_state_in_its_context() -> None:
    with Workflow(name="wf") as wf:
        Operator("t").action_on_condition(TaskAction.START, Counter())
    [rule] = wf.rules["t"]
    context = MemoryContext()
    assert rule.trigger(Event(key="number", value="4"), context) is None
    assert rule.trigger(Event(key="number", value="5"), context) is None
    assert rule.trigger(Event(key="number", value="1"), context) == TaskAction.START
    assert context.states == {"sum": 10}
    assert wf.describe()["rules"]["t"][0]["condition"]["type"].endswith("Counter")


def test_state_values_must_be_json() -> None:
    state = MemoryContext().get_state(ValueStateDescriptor("s"))
    with pytest.raises(Exception, match="cannot be stored"):
        state.update(object())  # type: ignore[attr-defined]


def test_meet_all_needs_every_child_and_starts_over_after_firing() -> None:
    cond = MeetAllCondition("both", [SingleEventCondition("a"), SingleEventCondition("b")])
    context = MemoryContext()
    assert not cond.is_met(Event(key="a"), context)
    assert not cond.is_met(Event(key="a"), context)
    assert cond.is_met(Event(key="b"), context)
    assert not cond.is_met(Event(key="b"), context)  # memory cleared once it fired
    assert cond.subscriptions("default") == [("default", "a"), ("default", "b")]


def test_meet_any_needs_one_child() -> None:
    cond = MeetAnyCondition([SingleEventCondition("a"), SingleEventCondition("b")])
    assert cond.is_met(Event(key="b"), MemoryContext())
    assert not cond.is_met(Event(key="c"), MemoryContext())


def test_workflow_rule_triggers_on_its_condition() -> None:
    rule = WorkflowRule(SingleEventCondition("go"))
    assert rule.trigger(Event(key="go"), MemoryContext())
    with pytest.raises(WorkflowDefinitionError):
        WorkflowRule("go")  # type: ignore[arg-type]


def write(tmp_path: Path, text: str, name: str = "flow.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_tutorial_file_loads_unchanged() -> None:
    [wf] = load_workflows(REPO / "samples" / "online_machine_learning" / "online_ml_workflow.py")
    assert (wf.namespace, wf.name) == ("default", "online_machine_learning")
    assert list(wf.tasks) == ["pre_processing", "training", "validating", "deploying", "predicting"]
    assert sorted(wf.rules) == ["deploying", "training", "validating"]
    assert wf.subscriptions() == [("default", "data_prepared"), ("default", "model_validated")]


def test_several_workflows_per_file(tmp_path: Path) -> None:
    path = write(tmp_path, "from aiflow import Workflow, Operator\n"
                           "with Workflow(name='one') as w1:\n    Operator('a')\n"
                           "with Workflow(name='two', namespace='team') as w2:\n    Operator('b')\n")
    assert [(w.namespace, w.name) for w in load_workflows(path)] == [("default", "one"), ("team", "two")]


@pytest.mark.parametrize(("source", "line", "message"), [
    ("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n    Operator('a')\n    Operator('a')\n",
     4, "already has a task named 'a'"),
    ("from aiflow import Operator\n\nOperator('x')\n", 3, "outside a `with Workflow"),
    ("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n"
     "    Operator('t', periodic_expression='cron@bad')\n", 3, "cron expression"),
    ("from aiflow import Workflow, Operator\nwith Workflow(name='a'):\n    x = Operator('x')\n"
     "with Workflow(name='b'):\n    Operator('y').start_after(x)\n", 5, "rules can only name tasks of their own"),
    ("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n    a = Operator('a')\n    b = Operator('b')\n"
     "    a.start_after(b)\n    b.start_after(a)\n", 5, "start_after cycle"),
    ("from aiflow import Workflow, BashOperator\nwith Workflow(name='w'):\n"
     "    BashOperator('t', bash_command='true', queue='GPU!')\n", 3,
     "task 't': queue name 'GPU!' is invalid: use lower-case letters, digits, '_' and '-' (1 to 64 of them)"),
    ("import json\n\ndef f(:\n    pass\n", 3, "SyntaxError"),
    ("import os\nraise RuntimeError('broken at import')\n", 2, "RuntimeError: broken at import"),
    ("import no_such_module_here\n", 1, "ModuleNotFoundError"),
])
def test_bad_files_are_refused_with_the_line(tmp_path: Path, source: str, line: int, message: str) -> None:
    path = write(tmp_path, source)
    with pytest.raises(WorkflowFileError) as info:
        load_workflows(path)
    assert f"{path}:{line}:" in str(info.value)
    assert message in str(info.value)


def test_a_file_without_workflows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkflowFileError, match="defines no Workflow"):
        load_workflows(write(tmp_path, "x = 1\n"))
    with pytest.raises(WorkflowFileError, match="no such file"):
        load_workflows(tmp_path / "missing.py")


@pytest.mark.parametrize("queue", ["", "GPU", "a.b", "x" * 65, 7, None])
def test_a_bad_queue_name_is_refused_with_the_line(queue: object) -> None:
    with Workflow(name="w"), pytest.raises(WorkflowDefinitionError, match="queue name .* is invalid") as info:
        Operator("t", queue=queue)  # type: ignore[arg-type]
    assert info.value.line is not None


def test_a_task_runs_on_the_default_queue_unless_it_names_one() -> None:
    with Workflow(name="w") as wf:
        plain = Operator("plain")
        gpu = PythonOperator("train", python_callable=print, queue="gpu")
        BashOperator("big", bash_command="true", queue="x" * 64)
    assert plain.queue == "default" and gpu.queue == "gpu" and "queue" not in gpu.config
    assert [t["queue"] for t in wf.describe()["tasks"]] == ["default", "gpu", "x" * 64]
