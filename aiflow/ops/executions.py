"""Workflow executions and the tries of their tasks: starting and stopping them (commands to the scheduler),
and reading what the scheduler stored about them."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from aiflow.config import Config
from aiflow.errors import Conflict, NotFound
from aiflow.ops._common import _config, _Info, _latest_snapshot, _maybe, _ns, _owned_row, _via_api, _workflow_session
from aiflow.ops._publish import Command, check_reachable, send_inbox_command
from aiflow.sdk.status import TASK_ALIVE_SET, WORKFLOW_FINISHED_SET, TaskStatus, WorkflowStatus
from aiflow.store.db import Store
from aiflow.store.models import ExecutionRow, TaskExecutionRow, WorkflowRow


@dataclass
class TaskExecutionInfo(_Info):
    execution_id: str
    task: str
    try_number: int
    status: str
    begin_date: datetime | None
    end_date: datetime | None
    message: str
    cause: str
    worker: str


@dataclass
class ExecutionInfo(_Info):
    id: str
    namespace: str
    workflow: str
    snapshot_version: int
    status: str
    run_type: str
    begin_date: datetime | None
    end_date: datetime | None
    cause: str
    message: str = ""  # why it failed, when no try says it (its workflow could not be loaded)


def _execution_info(row: ExecutionRow, workflow: WorkflowRow) -> ExecutionInfo:
    return ExecutionInfo(row.id, workflow.namespace, workflow.name, row.snapshot_version, row.status, row.run_type,
                         _maybe(row.begin_date), _maybe(row.end_date), row.cause, row.message)


def _task_info(row: TaskExecutionRow) -> TaskExecutionInfo:
    return TaskExecutionInfo(row.execution_id, row.task_name, row.try_number, row.status, _maybe(row.begin_date),
                             _maybe(row.end_date), row.message, row.cause, row.worker)


def _execution_row(s: Session, execution_id: str) -> tuple[ExecutionRow, WorkflowRow]:
    return _owned_row(s, ExecutionRow, execution_id, "workflow execution")


def new_execution_id() -> str:
    return uuid.uuid4().hex[:12]


# -- workflow executions ---------------------------------------------------------------------
@_via_api
def start_workflow_execution(workflow_name: str, namespace: str | None = None, *, config: Config | None = None,
                             wait: float = 10.0) -> str:
    """Start an execution of the workflow's latest snapshot; returns its id.

    Waits up to `wait` seconds for a scheduler to take it (so `list` shows it at once); a workflow
    that is disabled is refused.
    """
    config = _config(config)
    namespace = _ns(config, namespace)
    with _workflow_session(config, namespace, workflow_name) as (s, row):
        if not row.is_enabled:
            raise Conflict(f"workflow {namespace}.{workflow_name} is disabled: `aiflow workflow enable "
                           f"{workflow_name}` first")
        snap = _latest_snapshot(s, row)
        args = {"snapshot_version": str(snap.version), "snapshot_uri": snap.uri, "snapshot_sha256": snap.sha256,
                "workflow_file": snap.workflow_file, "run_type": "MANUAL", "cause": "started by a user"}
    execution_id = new_execution_id()
    check_reachable(config)
    send_inbox_command(config, namespace, workflow_name, Command.START_EXECUTION, execution_id, args=args)
    if wait > 0:
        wait_for_execution(execution_id, wait, config=config)
    return execution_id


def wait_for_execution(execution_id: str, timeout: float, *, config: Config | None = None) -> bool:
    """True once the execution shows in the store; False if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if get_workflow_execution(execution_id, config=config) is not None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@_via_api
def get_workflow_execution(execution_id: str, *, config: Config | None = None) -> ExecutionInfo | None:
    with Store(_config(config)).session() as s:
        try:
            return _execution_info(*_execution_row(s, execution_id))
        except NotFound:
            return None


@_via_api
def list_workflow_executions(workflow_name: str, namespace: str | None = None, limit: int | None = None,
                             offset: int | None = None, *, status: str | None = None,
                             config: Config | None = None) -> list[ExecutionInfo]:
    """The workflow's executions, newest first (only those with `status`, when given)."""
    with _workflow_session(_config(config), namespace, workflow_name) as (s, workflow):
        query = select(ExecutionRow).where(ExecutionRow.workflow_id == workflow.id)
        if status is not None:
            query = query.where(ExecutionRow.status == status.upper())
        rows = s.scalars(query.order_by(ExecutionRow.begin_date.desc()).limit(limit).offset(offset))
        return [_execution_info(r, workflow) for r in rows]


def _command(execution_id: str, command: Command, task: str | None, config: Config | None) -> ExecutionInfo:
    """Send the command for the execution (and its task, if given) once the store knows both. What the
    scheduler would pass over without a word is refused here, before anything is sent: a START of a task
    whose latest try is alive, or of a task of an execution that has finished."""
    config = _config(config)
    with Store(config).session() as s:
        row, workflow = _execution_row(s, execution_id)
        info = _execution_info(row, workflow)
        if task is not None and task not in {t["name"] for t in json.loads(workflow.definition)["tasks"]}:
            raise NotFound(f"workflow {workflow.name} has no task {task!r}")
        if command is Command.START_TASK:
            assert task is not None
            if WorkflowStatus(row.status) in WORKFLOW_FINISHED_SET:
                raise Conflict(f"workflow execution {execution_id} is {row.status}: it starts no task any more; "
                               f"start a new execution of {workflow.name}")
            latest = s.scalar(select(TaskExecutionRow).where(TaskExecutionRow.execution_id == execution_id,
                                                             TaskExecutionRow.task_name == task)
                              .order_by(TaskExecutionRow.try_number.desc()).limit(1))
            if latest is not None and TaskStatus(latest.status) in TASK_ALIVE_SET:
                raise Conflict(f"task {task!r} of execution {execution_id} is {latest.status} (try "
                               f"{latest.try_number}): stop it first or use task-execution restart")
    send_inbox_command(config, info.namespace, info.workflow, command, execution_id, task)
    return info


@_via_api
def stop_workflow_execution(workflow_execution_id: str, *, config: Config | None = None) -> None:
    """Ask the scheduler to stop the execution and every try of it that is alive (asynchronous)."""
    _command(workflow_execution_id, Command.STOP_EXECUTION, None, config)


def stop_workflow_executions(workflow_name: str, namespace: str | None = None, *,
                             config: Config | None = None) -> list[str]:
    """Stop every unfinished execution of the workflow; returns their ids."""
    config = _config(config)
    ids = [e.id for e in list_workflow_executions(workflow_name, namespace, config=config)
           if WorkflowStatus(e.status) not in WORKFLOW_FINISHED_SET]
    for execution_id in ids:
        stop_workflow_execution(execution_id, config=config)
    return ids


@_via_api
def delete_workflow_execution(workflow_execution_id: str, *, config: Config | None = None) -> None:
    with Store(_config(config)).session() as s:
        row, _ = _execution_row(s, workflow_execution_id)
        if WorkflowStatus(row.status) not in WORKFLOW_FINISHED_SET:
            raise Conflict(f"workflow execution {workflow_execution_id} is {row.status}: stop it first")
        s.delete(row)


# -- task executions -------------------------------------------------------------------------
@_via_api
def start_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    """START the task in the execution: a new try. Conflict if a try of it is alive (QUEUED, RUNNING,
    RETRYING, STOPPING: stop it first, or restart it) or the execution has finished."""
    _command(workflow_execution_id, Command.START_TASK, task_name, config)


@_via_api
def stop_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    _command(workflow_execution_id, Command.STOP_TASK, task_name, config)


@_via_api
def restart_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    _command(workflow_execution_id, Command.RESTART_TASK, task_name, config)


@_via_api
def list_task_executions(workflow_execution_id: str, *, config: Config | None = None) -> list[TaskExecutionInfo]:
    with Store(_config(config)).session() as s:
        _execution_row(s, workflow_execution_id)
        rows = s.scalars(select(TaskExecutionRow).where(TaskExecutionRow.execution_id == workflow_execution_id)
                         .order_by(TaskExecutionRow.begin_date, TaskExecutionRow.task_name,
                                   TaskExecutionRow.try_number))
        return [_task_info(r) for r in rows]


@_via_api
def get_task_execution(workflow_execution_id: str, task_name: str, try_number: int | None = None, *,
                       config: Config | None = None) -> TaskExecutionInfo:
    """A try of the task (the latest unless `try_number` is given)."""
    with Store(_config(config)).session() as s:
        query = select(TaskExecutionRow).where(TaskExecutionRow.execution_id == workflow_execution_id,
                                               TaskExecutionRow.task_name == task_name)
        if try_number is not None:
            query = query.where(TaskExecutionRow.try_number == try_number)
        row = s.scalar(query.order_by(TaskExecutionRow.try_number.desc()).limit(1))
        if row is None:
            raise NotFound(f"no try of task {task_name!r} in execution {workflow_execution_id}")
        return _task_info(row)


@_via_api
def task_log_path(workflow_execution_id: str, task_name: str, try_number: int | None = None, *,
                  config: Config | None = None) -> Path:
    """Where the worker writes the try's output (on the worker's machine)."""
    config = _config(config)
    info = get_task_execution(workflow_execution_id, task_name, try_number, config=config)
    execution = get_workflow_execution(workflow_execution_id, config=config)
    assert execution is not None
    return config.home / "logs" / execution.workflow / workflow_execution_id / task_name / f"{info.try_number}.log"
