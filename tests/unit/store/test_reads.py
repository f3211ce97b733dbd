"""The reads of store.reads, on SQLite (through the stdlib sqlite3) and PostgreSQL (through SQLAlchemy): the ops
functions built on them give what the ORM queries they replaced gave — the same records, order, filters, limits
and times — and a SQLite store is read without SQLAlchemy only when it is at the newest revision."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aiflow import ops
from aiflow.config import Config
from aiflow.errors import Conflict, NotFound, StoreError
from aiflow.ops import executions
from aiflow.ops.executions import ExecutionInfo, TaskExecutionInfo
from aiflow.protocol.commands import Command
from aiflow.store import reads, sqlite
from aiflow.store.db import Store
from aiflow.store.models import ExecutionRow, NamespaceRow, SnapshotRow, TaskExecutionRow, WorkflowRow

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def _config(home: Path, db_uri: str) -> Config:
    return Config.load(home=home, environ={"AIFLOW_DB_URI": db_uri})


def _fill(config: Config) -> None:
    """Two workflows: `w` (enabled, snapshots 1 and 2) with executions of several statuses, one not begun yet,
    and tries (one not begun, two of one task); `off` (disabled, its only snapshot missing)."""
    with Store(config).session() as s:
        assert s.get(NamespaceRow, "default") is not None  # made with the schema
        w = WorkflowRow(namespace="default", name="w", is_enabled=True, latest_version=2, workflow_file="w/w.py",
                        definition='{"tasks": [{"name": "a"}, {"name": "b"}]}', create_time=T0, update_time=T0)
        off = WorkflowRow(namespace="default", name="off", is_enabled=False, latest_version=1,
                          workflow_file="off/off.py", definition='{"tasks": []}', create_time=T0, update_time=T0)
        s.add_all([w, off])
        s.flush()
        for version in (1, 2):
            s.add(SnapshotRow(workflow_id=w.id, version=version, uri=f"file:///blobs/w{version}.zip",
                              sha256=f"{version}" * 64, workflow_file="w/w.py", definition=w.definition,
                              create_time=T0))
        statuses = ["SUCCESS", "FAILED", "RUNNING", "SUCCESS", "STOPPED", "SUCCESS", "INIT"]
        for i, status in enumerate(statuses):
            begun = None if status == "INIT" else T0 + timedelta(minutes=i)
            s.add(ExecutionRow(id=f"e{i}", workflow_id=w.id, snapshot_version=1 + i % 2, status=status,
                               run_type="MANUAL" if i % 3 else "EVENT", begin_date=begun,
                               end_date=begun + timedelta(seconds=30) if begun and status != "RUNNING" else None,
                               cause=f"cause {i}", message="boom" if status == "FAILED" else ""))
        s.flush()
        tries = [("a", 1, "FAILED", 0), ("a", 2, "SUCCESS", 1), ("b", 1, "RUNNING", 2), ("c", 1, "QUEUED", None)]
        for task, number, status, minute in tries:
            begun = None if minute is None else T0 + timedelta(minutes=2, seconds=minute)
            s.add(TaskExecutionRow(id=f"e2/{task}/{number}", execution_id="e2", task_name=task, try_number=number,
                                   status=status, begin_date=begun, end_date=None, message=f"m {task}{number}",
                                   cause="execution started", worker="w1"))


@pytest.fixture
def config(db_uri: str, tmp_path: Path) -> Config:
    config = _config(tmp_path / "home", db_uri)
    _fill(config)
    return config


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ops.executions sends to Kafka, recorded instead of sent."""
    commands: list[dict[str, Any]] = []
    monkeypatch.setattr(executions, "check_reachable", lambda config: None)
    monkeypatch.setattr(executions, "send_inbox_command", lambda config, namespace, workflow, command, *rest, **kw:
                        commands.append({"workflow": workflow, "command": command, "rest": rest, **kw}))
    return commands


# The ORM queries the reads replaced, as they were: what the reads must give.
def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _orm_execution(row: ExecutionRow, workflow: WorkflowRow) -> ExecutionInfo:
    return ExecutionInfo(row.id, workflow.namespace, workflow.name, row.snapshot_version, row.status, row.run_type,
                         _aware(row.begin_date), _aware(row.end_date), row.cause, row.message)


def _orm_try(row: TaskExecutionRow) -> TaskExecutionInfo:
    return TaskExecutionInfo(row.execution_id, row.task_name, row.try_number, row.status, _aware(row.begin_date),
                             _aware(row.end_date), row.message, row.cause, row.worker)


def _orm_executions(config: Config, status: str | None, limit: int | None, offset: int | None) -> list[ExecutionInfo]:
    with Store(config).session() as s:
        workflow = s.scalar(select(WorkflowRow).where(WorkflowRow.name == "w"))
        assert workflow is not None
        query = select(ExecutionRow).where(ExecutionRow.workflow_id == workflow.id)
        if status is not None:
            query = query.where(ExecutionRow.status == status.upper())
        rows = s.scalars(query.order_by(ExecutionRow.begin_date.desc()).limit(limit).offset(offset))
        return [_orm_execution(r, workflow) for r in rows]


def _orm_tries(config: Config, execution_id: str) -> list[TaskExecutionInfo]:
    with Store(config).session() as s:
        return [_orm_try(r) for r in s.scalars(
            select(TaskExecutionRow).where(TaskExecutionRow.execution_id == execution_id)
            .order_by(TaskExecutionRow.begin_date, TaskExecutionRow.task_name, TaskExecutionRow.try_number))]


def _same_times(found: list[Any], expected: list[Any]) -> None:
    """Equal records whose times are also of the same type and offset (== on aware datetimes ignores the zone)."""
    assert found == expected
    for a, b in zip(found, expected, strict=True):
        for field in ("begin_date", "end_date"):
            x, y = getattr(a, field), getattr(b, field)
            assert type(x) is type(y) and (x is None or (x.tzinfo is not None and x.utcoffset() == y.utcoffset()))


@pytest.mark.parametrize(("status", "limit", "offset"), [
    (None, None, None), ("success", None, None), ("SUCCESS", 2, None), (None, 3, 2), (None, None, 4), ("failed", 5, 0),
    ("", None, None), (None, 0, None), (None, 10, 10)])
def test_executions_of_a_workflow_are_those_the_orm_gave(config: Config, status: str | None, limit: int | None,
                                                          offset: int | None) -> None:
    found = ops.list_workflow_executions("w", limit=limit, offset=offset, status=status, config=config)
    _same_times(found, _orm_executions(config, status, limit, offset))


def test_one_execution_and_its_tries_are_those_the_orm_gave(config: Config) -> None:
    with Store(config).session() as s:
        expected = [_orm_execution(r, s.get(WorkflowRow, r.workflow_id))  # type: ignore[arg-type]
                    for r in s.scalars(select(ExecutionRow).order_by(ExecutionRow.id))]
    _same_times([ops.get_workflow_execution(e.id, config=config) for e in expected], expected)
    assert ops.get_workflow_execution("nope", config=config) is None

    tries = ops.list_task_executions("e2", config=config)
    _same_times(tries, _orm_tries(config, "e2"))
    assert [(t.task, t.try_number) for t in tries if t.begin_date is not None] == [("a", 1), ("a", 2), ("b", 1)]
    assert ops.list_task_executions("e0", config=config) == []
    with pytest.raises(NotFound, match="workflow execution nope does not exist"):
        ops.list_task_executions("nope", config=config)


def test_a_try_is_the_latest_unless_its_number_is_given(config: Config) -> None:
    assert ops.get_task_execution("e2", "a", config=config).try_number == 2
    first = ops.get_task_execution("e2", "a", 1, config=config)
    _same_times([first], [t for t in _orm_tries(config, "e2") if (t.task, t.try_number) == ("a", 1)])
    with pytest.raises(NotFound, match="no try of task 'a' in execution e2"):
        ops.get_task_execution("e2", "a", 3, config=config)


def test_a_missing_workflow_is_named_with_where_to_look(config: Config) -> None:
    with pytest.raises(NotFound, match=r"workflow default\.nope does not exist \(see `aiflow workflow list -n "
                                       r"default`\)"):
        ops.list_workflow_executions("nope", config=config)
    with pytest.raises(NotFound, match=r"workflow other\.w does not exist"):
        ops.list_workflow_executions("w", "other", config=config)


def test_start_sends_the_latest_snapshot_and_refuses_a_disabled_workflow(config: Config,
                                                                          sent: list[dict[str, Any]]) -> None:
    execution_id = ops.start_workflow_execution("w", config=config, wait=0)
    [command] = sent
    assert command["command"] is Command.START_EXECUTION and command["rest"] == (execution_id,)
    assert command["args"] == {"snapshot_version": "2", "snapshot_uri": "file:///blobs/w2.zip",
                               "snapshot_sha256": "2" * 64, "workflow_file": "w/w.py", "run_type": "MANUAL",
                               "cause": "started by a user"}
    with pytest.raises(Conflict, match=r"workflow default\.off is disabled: `aiflow workflow enable off` first"):
        ops.start_workflow_execution("off", config=config, wait=0)
    with pytest.raises(NotFound, match=r"workflow default\.nope does not exist"):
        ops.start_workflow_execution("nope", config=config, wait=0)
    assert len(sent) == 1


def test_task_commands_are_checked_against_the_store_before_they_are_sent(config: Config,
                                                                           sent: list[dict[str, Any]]) -> None:
    with pytest.raises(NotFound, match="workflow w has no task 'zz'"):
        ops.start_task_execution("e2", "zz", config=config)
    with pytest.raises(Conflict, match=r"task 'b' of execution e2 is RUNNING \(try 1\)"):
        ops.start_task_execution("e2", "b", config=config)
    with pytest.raises(Conflict, match="workflow execution e0 is SUCCESS: it starts no task any more"):
        ops.start_task_execution("e0", "a", config=config)
    with pytest.raises(NotFound, match="workflow execution nope does not exist"):
        ops.stop_workflow_execution("nope", config=config)
    assert sent == []
    ops.start_task_execution("e2", "a", config=config)  # its latest try SUCCEEDED: a new one may start
    ops.stop_workflow_execution("e2", config=config)
    assert [(c["command"], c["rest"]) for c in sent] == [(Command.START_TASK, ("e2", "a")),
                                                         (Command.STOP_EXECUTION, ("e2", None))]


def test_stop_all_stops_the_unfinished_executions(config: Config, sent: list[dict[str, Any]]) -> None:
    assert sorted(ops.stop_workflow_executions("w", config=config)) == ["e2", "e6"]


def test_a_finished_execution_is_deleted_and_a_running_one_refused(config: Config) -> None:
    with pytest.raises(Conflict, match="workflow execution e2 is RUNNING: stop it first"):
        ops.delete_workflow_execution("e2", config=config)
    ops.delete_workflow_execution("e0", config=config)
    assert ops.get_workflow_execution("e0", config=config) is None
    with pytest.raises(NotFound, match="workflow execution e0 does not exist"):
        ops.delete_workflow_execution("e0", config=config)


def test_a_missing_sqlite_store_is_created_as_before(tmp_path: Path) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path}/db/aiflow.db")
    assert ops.get_workflow_execution("e0", config=config) is None  # no file: SQLAlchemy's way makes the schema
    assert (tmp_path / "db" / "aiflow.db").is_file()
    with reads.reading(config) as r:
        assert r.dialect == "sqlite" and r.execution("e0") is None


def test_sqlite_reads_without_sqlalchemy_only_at_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path}/aiflow.db")
    _fill(config)
    used: list[str] = []
    ensure_schema = Store.ensure_schema

    def recorded(self: Store) -> None:
        used.append("sqlalchemy")
        ensure_schema(self)

    monkeypatch.setattr(Store, "ensure_schema", recorded)
    assert [e.id for e in ops.list_workflow_executions("w", limit=2, config=config)] == ["e5", "e4"]
    assert used == []
    with sqlite3.connect(tmp_path / "aiflow.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    with pytest.raises(StoreError, match="run `aiflow db upgrade`"):
        ops.list_workflow_executions("w", config=config)
    assert used == ["sqlalchemy"]


def test_a_postgresql_store_is_read_through_sqlalchemy(tmp_path: Path, postgres_server: Any) -> None:
    from tests.conftest import new_database

    with reads.reading(_config(tmp_path, new_database(postgres_server))) as r:
        assert r.dialect == "postgresql" and r.execution("e0") is None  # an empty database: the schema is made


def test_reading_a_missing_sqlite_file_never_creates_it(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "aiflow.db"
    with pytest.raises(sqlite3.OperationalError):
        sqlite.open_existing(str(path))
    assert reads._sqlite_at_head(f"sqlite:///{path}") is None
    assert not path.parent.exists()


def test_the_reader_waits_for_locks_as_the_engine_does(tmp_path: Path) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path}/aiflow.db")
    Store(config).ensure_schema()
    connection = sqlite.open_existing(str(tmp_path / "aiflow.db"))
    try:
        assert connection.execute("PRAGMA busy_timeout").fetchone() == (int(sqlite.BUSY_TIMEOUT * 1000),)
    finally:
        connection.close()


@pytest.mark.parametrize(("uri", "path"), [
    ("sqlite:////abs/aiflow.db", "/abs/aiflow.db"), ("sqlite:///rel/aiflow.db", "rel/aiflow.db"),
    ("sqlite:////a%20b/aiflow.db", "/a b/aiflow.db"), ("sqlite://", None), ("sqlite:///:memory:", None),
    ("sqlite:////abs/aiflow.db?timeout=5", None), ("sqlite+pysqlite:////abs/aiflow.db", None),
    ("postgresql+psycopg://u@h/db", None)])
def test_only_a_plain_sqlite_file_uri_is_read_without_sqlalchemy(uri: str, path: str | None) -> None:
    assert sqlite.file_of(uri) == path
