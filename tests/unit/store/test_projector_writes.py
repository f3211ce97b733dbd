"""What the projector writes of an execution's state, on SQLite and PostgreSQL: every try as the state says,
and, given what it wrote last, only the tries that changed since (a change of one try of an execution of many
tasks writes one row, not all of them)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from aiflow.config import Config
from aiflow.scheduler.core import Execution, Snapshot, TaskTry
from aiflow.store.db import Store
from aiflow.store.models import ExecutionRow, TaskExecutionRow, WorkflowRow
from aiflow.store.projector import apply_execution

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def _execution(statuses: dict[str, str]) -> dict[str, Any]:
    ex = Execution("e1", "default", "w", Snapshot(1, "file:///b.zip", "a" * 64, "w.py"), "MANUAL", "started",
                   create_time=T0.timestamp())
    for task, status in statuses.items():
        ex.tries[task] = [TaskTry(task, 1, status, "started", queued_time=T0.timestamp(),
                                  begin_time=None if status == "QUEUED" else T0.timestamp() + 1)]
    return ex.to_dict()


def test_only_the_tries_that_changed_since_the_last_write_are_written(db_uri: str, tmp_path: Path) -> None:
    store = Store(Config.load(home=tmp_path / "home", environ={"AIFLOW_DB_URI": db_uri}))
    with store.session() as s:
        s.add(WorkflowRow(namespace="default", name="w", is_enabled=True, latest_version=1, workflow_file="w.py",
                          definition='{"tasks": []}', create_time=T0, update_time=T0))
    rows_written: list[int] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def count(conn: object, cursor: object, statement: str, params: Any, context: object, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("INSERT INTO TASK_EXECUTION", "UPDATE TASK_EXECUTION")):
            rows_written.append(len(params) if executemany else 1)

    statuses = {f"t{i}": "QUEUED" for i in range(50)}
    with store.session() as s:
        written = apply_execution(s, _execution(statuses))
    assert sum(rows_written) == 50
    rows_written.clear()
    statuses["t7"] = "RUNNING"
    with store.session() as s:
        written = apply_execution(s, _execution(statuses), written)
    assert sum(rows_written) == 1  # t7's row only
    with store.session() as s:  # without what was written: every try is looked at, and the rows stay right
        apply_execution(s, _execution(statuses))
    with store.session() as s:
        rows = {r.task_name: r for r in s.scalars(select(TaskExecutionRow))}
    assert len(rows) == 50 and rows["t7"].status == "RUNNING" and rows["t8"].status == "QUEUED"
    assert rows["t7"].begin_date is not None and rows["t7"].begin_date.replace(tzinfo=timezone.utc).timestamp() \
        == T0.timestamp() + 1


def test_an_execution_deleted_since_the_last_write_is_written_whole_again(db_uri: str, tmp_path: Path) -> None:
    """`workflow-execution delete` takes a finished execution's rows (its tries with it) while a try may
    still be stopping; the state record of that try's end must bring back every try, not only it."""
    store = Store(Config.load(home=tmp_path / "home", environ={"AIFLOW_DB_URI": db_uri}))
    with store.session() as s:
        s.add(WorkflowRow(namespace="default", name="w", is_enabled=True, latest_version=1, workflow_file="w.py",
                          definition='{"tasks": []}', create_time=T0, update_time=T0))
    statuses = {"done": "SUCCESS", "stopping": "STOPPING"}
    with store.session() as s:
        written = apply_execution(s, _execution(statuses))
    with store.session() as s:
        execution = s.get(ExecutionRow, "e1")
        assert execution is not None
        s.delete(execution)
    statuses["stopping"] = "STOPPED"
    with store.session() as s:
        apply_execution(s, _execution(statuses), written)
    with store.session() as s:
        rows = {r.task_name: r.status for r in s.scalars(select(TaskExecutionRow))}
    assert rows == {"done": "SUCCESS", "stopping": "STOPPED"}
