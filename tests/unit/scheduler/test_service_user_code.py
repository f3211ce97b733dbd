"""The scheduler service when user code fails it, with Kafka clients that are never used (no broker):
inputs are applied and state flushed by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from aiflow import Operator, Workflow
from aiflow.errors import WorkflowFileError
from aiflow.protocol.messages import Command, InboxMessage, TaskStatusReport
from aiflow.scheduler import core
from aiflow.scheduler.core import Settings, StopTry
from aiflow.scheduler.service import Scheduler, _Owned
from aiflow.sdk.status import ExecutionType
from tests.conftest import make_config

SNAP = core.Snapshot(1, "file:///s.zip", "ab" * 32, "flow/flow.py")


def two_tasks() -> Workflow:
    with Workflow(name="pair", namespace="default") as wf:
        Operator("a")
        Operator("b")
    return wf


@pytest.fixture
def scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scheduler]:
    s = Scheduler(make_config(tmp_path / "home", "127.0.0.1:9"), Settings(heartbeat_timeout=30.0))
    monkeypatch.setattr(s, "_partition_of", lambda wid: 0)
    yield s
    s.definitions.close()


def test_an_execution_whose_workflow_no_longer_loads_fails_with_the_reason_and_its_tries_stop(
        scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    ex, _ = core.start_execution(two_tasks(), "e1", SNAP, ExecutionType.MANUAL, "test", 0.0)
    for task in ("a", "b"):
        core.on_report(ex, two_tasks(), task, 1, "RUNNING", "", "w1", 1.0)
    scheduler.executions[ex.id] = _Owned(ex, 0)

    def unloadable(execution: core.Execution) -> Workflow:
        raise WorkflowFileError("flow.py: ModuleNotFoundError: No module named 'gone'")
    monkeypatch.setattr(scheduler, "_workflow_of", unloadable)

    # After a restart, say: a's try fails, and the workflow cannot be loaded to decide what follows.
    scheduler._apply(InboxMessage.for_report("default", "pair", TaskStatusReport("e1", "a", 1, "FAILED", "", "w1")),
                     0, 10)
    assert ex.status == "FAILED"  # not SUCCESS: the stand-in workflow's lack of tasks decides nothing
    assert "its workflow cannot be loaded any more" in ex.message and "No module named 'gone'" in ex.message
    assert ex.latest("a").status == "FAILED"  # type: ignore[union-attr]
    assert ex.latest("b").status == "STOPPING"  # type: ignore[union-attr]  # its worker is told to stop it
    assert any(r.role == "control" for r in scheduler._pending)

    scheduler._apply(InboxMessage.for_report("default", "pair", TaskStatusReport("e1", "b", 1, "STOPPED", "", "w1")),
                     0, 11)
    scheduler._flush_state()
    assert ex.settled and "e1" in scheduler.finished and "e1" not in scheduler.executions


def test_a_start_settled_in_a_step_that_rolls_back_is_not_taken_for_a_duplicate(
        scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    """A START whose snapshot cannot be loaded settles in its own step. If that step's commit fails,
    the START is read again and must create the execution then, not be ignored as known."""
    monkeypatch.setattr(scheduler.definitions, "announced", lambda *args: True)
    monkeypatch.setattr(scheduler.workflows, "get", lambda *args: (_ for _ in ()).throw(WorkflowFileError("bad")))
    start = InboxMessage.for_command("default", "pair", Command.START_EXECUTION, "e2", args={
        "snapshot_version": "1", "snapshot_uri": SNAP.uri, "snapshot_sha256": SNAP.sha256,
        "workflow_file": SNAP.workflow_file})
    scheduler._apply(start, 0, 5)
    scheduler._flush_state()
    assert "e2" in scheduler.finished
    monkeypatch.setattr(scheduler.loop, "abort", lambda: None)  # the rewind itself needs Kafka
    monkeypatch.setattr(scheduler.loop, "consumer", SimpleNamespace(assignment=lambda: []))
    scheduler._recover(True)  # the commit failed: the step is undone
    assert "e2" not in scheduler.finished
    scheduler._apply(start, 0, 5)  # read again
    scheduler._flush_state()
    assert [r.key for r in scheduler._pending if r.role == "state" and r.key == "e2"] == ["e2"]


def test_stop_outputs_are_typed(scheduler: Scheduler) -> None:
    ex, _ = core.start_execution(two_tasks(), "e3", SNAP, ExecutionType.MANUAL, "test", 0.0)
    outputs = core.fail_execution(ex, "reason", 1.0)
    assert ex.status == "FAILED" and ex.message == "reason"
    assert {o.task for o in outputs if isinstance(o, StopTry)} == {"a", "b"}  # QUEUED tries are stopped too
    assert core.fail_execution(ex, "again", 2.0) == [] and ex.message == "reason"
