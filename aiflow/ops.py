"""The Python API that the CLI and users share: namespaces, workflows, snapshots, executions and tasks.

Every function takes an optional `config` (default: `Config.load()`); `namespace=None` means the
configured default namespace. Errors are `aiflow.errors` exceptions with a message that says what
to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aiflow.config import Config
from aiflow.errors import Conflict, NotFound, WorkflowFileError
from aiflow.kafka import clients, messages
from aiflow.kafka import workflows as workflow_topic
from aiflow.sdk.conditions import WorkflowRule, condition_from_spec, condition_to_spec
from aiflow.sdk.expressions import parse_expression
from aiflow.sdk.status import WORKFLOW_FINISHED_SET, WorkflowStatus
from aiflow.sdk.workflow import NAMESPACE_ENV, check_name
from aiflow.store import snapshots
from aiflow.store.blobs import blob_store
from aiflow.store.db import Store
from aiflow.store.models import (
    ExecutionRow,
    NamespaceRow,
    ScheduleRow,
    SnapshotRow,
    TaskExecutionRow,
    TriggerRow,
    WorkflowRow,
)

DEFAULT_NAMESPACE = "default"


# -- views -----------------------------------------------------------------------------------
@dataclass
class NamespaceInfo:
    name: str
    properties: dict[str, str]
    create_time: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "create_time": self.create_time.isoformat()}


@dataclass
class WorkflowInfo:
    namespace: str
    name: str
    version: int
    is_enabled: bool
    workflow_file: str
    create_time: datetime
    update_time: datetime
    definition: dict[str, Any]

    def to_dict(self, with_definition: bool = False) -> dict[str, Any]:
        row = {"namespace": self.namespace, "name": self.name, "version": self.version,
               "is_enabled": self.is_enabled, "workflow_file": self.workflow_file,
               "create_time": self.create_time.isoformat(), "update_time": self.update_time.isoformat()}
        if with_definition:
            row["tasks"] = self.definition.get("tasks", [])
            row["rules"] = self.definition.get("rules", {})
            row["event_keys"] = self.definition.get("event_keys", [])
        return row


@dataclass
class SnapshotInfo:
    namespace: str
    workflow: str
    version: int
    uri: str
    sha256: str
    workflow_file: str
    create_time: datetime
    definition: dict[str, Any]

    def to_dict(self, with_definition: bool = False) -> dict[str, Any]:
        row = {"namespace": self.namespace, "workflow": self.workflow, "version": self.version, "uri": self.uri,
               "sha256": self.sha256, "workflow_file": self.workflow_file,
               "create_time": self.create_time.isoformat()}
        if with_definition:
            row["definition"] = self.definition
        return row


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _namespace_info(row: NamespaceRow) -> NamespaceInfo:
    return NamespaceInfo(row.name, json.loads(row.properties or "{}"), _aware(row.create_time))


def _workflow_info(row: WorkflowRow) -> WorkflowInfo:
    return WorkflowInfo(row.namespace, row.name, row.latest_version, row.is_enabled, row.workflow_file,
                        _aware(row.create_time), _aware(row.update_time), json.loads(row.definition))


def _snapshot_info(workflow: WorkflowRow, row: SnapshotRow) -> SnapshotInfo:
    return SnapshotInfo(workflow.namespace, workflow.name, row.version, row.uri, row.sha256, row.workflow_file,
                        _aware(row.create_time), json.loads(row.definition))


def _config(config: Config | None) -> Config:
    return config or Config.load()


def _ns(config: Config, namespace: str | None) -> str:
    return namespace or config.namespace


# -- namespaces ------------------------------------------------------------------------------
def add_namespace(name: str, properties: dict[str, str] | None = None, *,
                  config: Config | None = None) -> NamespaceInfo:
    check_name("namespace", name)
    with Store(_config(config)).session() as s:
        if s.get(NamespaceRow, name) is not None:
            raise Conflict(f"namespace {name!r} already exists")
        row = NamespaceRow(name=name, properties=json.dumps(properties or {}), create_time=datetime.now(timezone.utc))
        s.add(row)
        s.flush()
        return _namespace_info(row)


def get_namespace(name: str, *, config: Config | None = None) -> NamespaceInfo | None:
    with Store(_config(config)).session() as s:
        row = s.get(NamespaceRow, name)
        return _namespace_info(row) if row else None


def update_namespace(name: str, properties: dict[str, str], *, config: Config | None = None) -> NamespaceInfo:
    with Store(_config(config)).session() as s:
        row = s.get(NamespaceRow, name)
        if row is None:
            raise NotFound(f"namespace {name!r} does not exist")
        row.properties = json.dumps(properties)
        return _namespace_info(row)


def list_namespaces(limit: int | None = None, offset: int | None = None, *,
                    config: Config | None = None) -> list[NamespaceInfo]:
    with Store(_config(config)).session() as s:
        rows = s.scalars(select(NamespaceRow).order_by(NamespaceRow.name).limit(limit).offset(offset))
        return [_namespace_info(r) for r in rows]


def delete_namespace(name: str, *, config: Config | None = None) -> None:
    """Delete an empty namespace. `default` is kept: it is where workflows without a namespace go."""
    if name == DEFAULT_NAMESPACE:
        raise Conflict("the 'default' namespace cannot be deleted")
    with Store(_config(config)).session() as s:
        row = s.get(NamespaceRow, name)
        if row is None:
            raise NotFound(f"namespace {name!r} does not exist")
        count = s.scalar(select(func.count()).select_from(WorkflowRow).where(WorkflowRow.namespace == name))
        if count:
            raise Conflict(f"namespace {name!r} still has {count} workflow(s): delete them first")
        s.delete(row)


# -- workflows -------------------------------------------------------------------------------
def inspect_workflow_file(path: Path, namespace: str) -> list[dict[str, Any]]:
    """Load the file in a separate Python process; return its workflows' descriptions or raise with
    the file's line and the error's last lines."""
    env = {**os.environ, NAMESPACE_ENV: namespace}
    done = subprocess.run([sys.executable, "-m", "aiflow.sdk.loader", str(path)], cwd=path.parent, env=env,
                          capture_output=True, text=True, timeout=600)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise WorkflowFileError(f"{path}: loading it crashed Python (exit {done.returncode}):\n{tail}") from None
    if "error" in result:
        raise WorkflowFileError(result["error"])
    return list(result["workflows"])


def _get_workflow_row(s: Session, namespace: str, name: str) -> WorkflowRow:
    row = s.scalar(select(WorkflowRow).where(WorkflowRow.namespace == namespace, WorkflowRow.name == name))
    if row is None:
        raise NotFound(f"workflow {namespace}.{name} does not exist (see `aiflow workflow list -n {namespace}`)")
    return row


def _publish(s: Session, config: Config, row: WorkflowRow, snapshot: SnapshotRow | None = None) -> None:
    """Publish the workflow's whole current definition (snapshot, flag, rule keys, active triggers and
    schedules) on the workflows topic; returns once it is durable."""
    snapshot = snapshot or _latest_snapshot(s, row)
    described = json.loads(snapshot.definition)
    triggers = [{"id": t.id, "condition": json.loads(t.definition), "paused": t.is_paused}
                for t in s.scalars(select(TriggerRow).where(TriggerRow.workflow_id == row.id).order_by(TriggerRow.id))]
    schedules = [{"id": sc.id, "expression": sc.expression, "paused": sc.is_paused}
                 for sc in s.scalars(select(ScheduleRow).where(ScheduleRow.workflow_id == row.id)
                                     .order_by(ScheduleRow.id))]
    trigger_keys: dict[tuple[str, str], None] = {}
    for t in triggers:
        if not t["paused"]:
            trigger_keys.update(dict.fromkeys(condition_from_spec(t["condition"]).subscriptions(row.namespace)))
    workflow_topic.publish(config, workflow_topic.WorkflowDefinition(
        namespace=row.namespace, workflow=row.name, version=snapshot.version, snapshot_uri=snapshot.uri,
        snapshot_sha256=snapshot.sha256, workflow_file=snapshot.workflow_file, enabled=row.is_enabled,
        rule_keys=[(k["namespace"], k["key"]) for k in described.get("event_keys", [])],
        trigger_keys=list(trigger_keys), definition=snapshot.definition, triggers=json.dumps(triggers),
        schedules=json.dumps(schedules)))


def _latest_snapshot(s: Session, row: WorkflowRow) -> SnapshotRow:
    snapshot = s.scalar(select(SnapshotRow).where(SnapshotRow.workflow_id == row.id,
                                                  SnapshotRow.version == row.latest_version))
    assert snapshot is not None, f"workflow {row.namespace}.{row.name} has no snapshot {row.latest_version}"
    return snapshot


def upload_workflows(workflow_file_path: str | os.PathLike[str],
                     artifacts: Sequence[str | os.PathLike[str]] | None = None, *,
                     namespace: str | None = None, config: Config | None = None) -> list[WorkflowInfo]:
    """Validate the file, snapshot it with its artifacts, and store and publish each workflow in it.

    A file that does not load is refused with its line and error, and nothing is stored. Uploading
    the same content again creates no new version. A disabled workflow stays disabled.
    """
    config = _config(config)
    path = Path(workflow_file_path).resolve()
    if not path.is_file():
        raise WorkflowFileError(f"{workflow_file_path}: no such file")
    described = inspect_workflow_file(path, _ns(config, namespace))
    store = Store(config)
    blobs = blob_store(config)
    results: list[WorkflowInfo] = []
    with tempfile.TemporaryDirectory(prefix="aiflow-upload-") as tmp:
        packed = snapshots.pack(path, [Path(a).resolve() for a in artifacts or []], Path(tmp))
        with store.session() as s:
            for wf in described:
                if s.get(NamespaceRow, wf["namespace"]) is None:
                    raise NotFound(f"workflow {wf['name']}: namespace {wf['namespace']!r} does not exist: "
                                   f"create it with `aiflow namespace add {wf['namespace']}`")
            uri = blobs.put(f"{described[0]['namespace']}/{path.stem}/{packed.sha256}.zip", packed.path)
            now = datetime.now(timezone.utc)
            for wf in described:
                definition = json.dumps(wf)
                row = s.scalar(select(WorkflowRow).where(WorkflowRow.namespace == wf["namespace"],
                                                         WorkflowRow.name == wf["name"]))
                if row is None:
                    row = WorkflowRow(namespace=wf["namespace"], name=wf["name"], is_enabled=True, latest_version=0,
                                      workflow_file=packed.workflow_file, definition=definition,
                                      create_time=now, update_time=now)
                    s.add(row)
                    s.flush()
                latest = s.scalar(select(SnapshotRow).where(SnapshotRow.workflow_id == row.id,
                                                            SnapshotRow.version == row.latest_version))
                if latest is None or latest.sha256 != packed.sha256 or latest.definition != definition:
                    latest = SnapshotRow(workflow_id=row.id, version=row.latest_version + 1, uri=uri,
                                         sha256=packed.sha256, workflow_file=packed.workflow_file,
                                         definition=definition, create_time=now)
                    s.add(latest)
                    row.latest_version = latest.version
                    row.workflow_file = packed.workflow_file
                    row.definition = definition
                    row.update_time = now
                s.flush()
                # Published before the commit: if Kafka refuses, the transaction rolls back and
                # nothing is stored; the blob alone stays, content-addressed and harmless.
                _publish(s, config, row, latest)
                results.append(_workflow_info(row))
    return results


def get_workflow(workflow_name: str, namespace: str | None = None, *,
                 config: Config | None = None) -> WorkflowInfo | None:
    config = _config(config)
    with Store(config).session() as s:
        try:
            return _workflow_info(_get_workflow_row(s, _ns(config, namespace), workflow_name))
        except NotFound:
            return None


def list_workflows(namespace: str | None = None, limit: int | None = None, offset: int | None = None, *,
                   config: Config | None = None) -> list[WorkflowInfo]:
    config = _config(config)
    with Store(config).session() as s:
        rows = s.scalars(select(WorkflowRow).where(WorkflowRow.namespace == _ns(config, namespace))
                         .order_by(WorkflowRow.name).limit(limit).offset(offset))
        return [_workflow_info(r) for r in rows]


def _set_enabled(workflow_name: str, namespace: str | None, enabled: bool, config: Config | None) -> WorkflowInfo:
    config = _config(config)
    with Store(config).session() as s:
        row = _get_workflow_row(s, _ns(config, namespace), workflow_name)
        row.is_enabled = enabled
        row.update_time = datetime.now(timezone.utc)
        _publish(s, config, row)
        return _workflow_info(row)


def disable_workflow(workflow_name: str, namespace: str | None = None, *, config: Config | None = None) -> WorkflowInfo:
    """Stop the workflow from starting anything new: no triggers, schedules or manual starts."""
    return _set_enabled(workflow_name, namespace, False, config)


def enable_workflow(workflow_name: str, namespace: str | None = None, *, config: Config | None = None) -> WorkflowInfo:
    return _set_enabled(workflow_name, namespace, True, config)


def delete_workflow(workflow_name: str, namespace: str | None = None, *, config: Config | None = None) -> None:
    """Delete the workflow with its snapshots and finished executions; refused while one runs."""
    config = _config(config)
    namespace = _ns(config, namespace)
    with Store(config).session() as s:
        row = _get_workflow_row(s, namespace, workflow_name)
        unfinished = s.scalar(select(func.count()).select_from(ExecutionRow).where(
            ExecutionRow.workflow_id == row.id,
            ExecutionRow.status.not_in([st.value for st in WORKFLOW_FINISHED_SET])))
        if unfinished:
            raise Conflict(f"workflow {namespace}.{workflow_name} has {unfinished} unfinished execution(s): "
                           "stop them first (`aiflow workflow-execution stop-all`)")
        uris = set(s.scalars(select(SnapshotRow.uri).where(SnapshotRow.workflow_id == row.id)))
        s.delete(row)
        s.flush()
        workflow_topic.publish_deletion(config, namespace, workflow_name)
        still_used = set(s.scalars(select(SnapshotRow.uri).where(SnapshotRow.uri.in_(uris))))
    blobs = blob_store(config)
    for uri in uris - still_used:
        blobs.delete(uri)


# -- snapshots -------------------------------------------------------------------------------
def list_workflow_snapshots(workflow_name: str, namespace: str | None = None, limit: int | None = None,
                            offset: int | None = None, *, config: Config | None = None) -> list[SnapshotInfo]:
    config = _config(config)
    with Store(config).session() as s:
        row = _get_workflow_row(s, _ns(config, namespace), workflow_name)
        snaps = s.scalars(select(SnapshotRow).where(SnapshotRow.workflow_id == row.id)
                          .order_by(SnapshotRow.version.desc()).limit(limit).offset(offset))
        return [_snapshot_info(row, snap) for snap in snaps]


def get_workflow_snapshot(workflow_name: str, version: int, namespace: str | None = None, *,
                          config: Config | None = None) -> SnapshotInfo:
    config = _config(config)
    with Store(config).session() as s:
        row = _get_workflow_row(s, _ns(config, namespace), workflow_name)
        snap = s.scalar(select(SnapshotRow).where(SnapshotRow.workflow_id == row.id, SnapshotRow.version == version))
        if snap is None:
            raise NotFound(f"workflow {row.namespace}.{row.name} has no snapshot version {version}")
        return _snapshot_info(row, snap)


def delete_workflow_snapshot(workflow_name: str, version: int, namespace: str | None = None, *,
                             config: Config | None = None) -> None:
    """Delete one earlier version. The latest, and any an unfinished execution runs, are kept."""
    config = _config(config)
    with Store(config).session() as s:
        row = _get_workflow_row(s, _ns(config, namespace), workflow_name)
        snap = s.scalar(select(SnapshotRow).where(SnapshotRow.workflow_id == row.id, SnapshotRow.version == version))
        if snap is None:
            raise NotFound(f"workflow {row.namespace}.{row.name} has no snapshot version {version}")
        if version == row.latest_version:
            raise Conflict(f"version {version} is the latest of {row.namespace}.{row.name}: upload a new version "
                           "first, or delete the workflow")
        in_use = s.scalar(select(func.count()).select_from(ExecutionRow).where(
            ExecutionRow.workflow_id == row.id, ExecutionRow.snapshot_version == version,
            ExecutionRow.status.not_in([st.value for st in WORKFLOW_FINISHED_SET])))
        if in_use:
            raise Conflict(f"version {version} of {row.namespace}.{row.name} is used by {in_use} "
                           "unfinished execution(s)")
        uri = snap.uri
        s.delete(snap)
        s.flush()
        shared = s.scalar(select(func.count()).select_from(SnapshotRow).where(SnapshotRow.uri == uri))
    if not shared:
        blob_store(config).delete(uri)


# -- executions ------------------------------------------------------------------------------
@dataclass
class TaskExecutionInfo:
    execution_id: str
    task: str
    try_number: int
    status: str
    begin_date: datetime | None
    end_date: datetime | None
    message: str
    cause: str
    worker: str

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["begin_date"] = self.begin_date.isoformat() if self.begin_date else None
        row["end_date"] = self.end_date.isoformat() if self.end_date else None
        return row


@dataclass
class ExecutionInfo:
    id: str
    namespace: str
    workflow: str
    snapshot_version: int
    status: str
    run_type: str
    begin_date: datetime | None
    end_date: datetime | None
    cause: str

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["begin_date"] = self.begin_date.isoformat() if self.begin_date else None
        row["end_date"] = self.end_date.isoformat() if self.end_date else None
        return row


def _maybe(moment: datetime | None) -> datetime | None:
    return _aware(moment) if moment else None


def _execution_info(row: ExecutionRow, workflow: WorkflowRow) -> ExecutionInfo:
    return ExecutionInfo(row.id, workflow.namespace, workflow.name, row.snapshot_version, row.status, row.run_type,
                         _maybe(row.begin_date), _maybe(row.end_date), row.cause)


def _task_info(row: TaskExecutionRow) -> TaskExecutionInfo:
    return TaskExecutionInfo(row.execution_id, row.task_name, row.try_number, row.status, _maybe(row.begin_date),
                             _maybe(row.end_date), row.message, row.cause, row.worker)


def new_execution_id() -> str:
    return uuid.uuid4().hex[:12]


def start_workflow_execution(workflow_name: str, namespace: str | None = None, *, config: Config | None = None,
                             wait: float = 10.0) -> str:
    """Start an execution of the workflow's latest snapshot; returns its id.

    Waits up to `wait` seconds for a scheduler to take it (so `list` shows it at once); a workflow
    that is disabled is refused.
    """
    config = _config(config)
    namespace = _ns(config, namespace)
    with Store(config).session() as s:
        row = _get_workflow_row(s, namespace, workflow_name)
        if not row.is_enabled:
            raise Conflict(f"workflow {namespace}.{workflow_name} is disabled: `aiflow workflow enable "
                           f"{workflow_name}` first")
        snap = _latest_snapshot(s, row)
        args = {"snapshot_version": str(snap.version), "snapshot_uri": snap.uri, "snapshot_sha256": snap.sha256,
                "workflow_file": snap.workflow_file, "run_type": "MANUAL", "cause": "started by a user"}
    execution_id = new_execution_id()
    clients.check_reachable(config)
    messages.send(config, messages.inbox_command(namespace, workflow_name, "START_EXECUTION", execution_id, args=args))
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


def _execution_row(s: Session, execution_id: str) -> tuple[ExecutionRow, WorkflowRow]:
    row = s.get(ExecutionRow, execution_id)
    if row is None:
        raise NotFound(f"workflow execution {execution_id} does not exist")
    workflow = s.get(WorkflowRow, row.workflow_id)
    assert workflow is not None
    return row, workflow


def get_workflow_execution(execution_id: str, *, config: Config | None = None) -> ExecutionInfo | None:
    with Store(_config(config)).session() as s:
        try:
            return _execution_info(*_execution_row(s, execution_id))
        except NotFound:
            return None


def list_workflow_executions(workflow_name: str, namespace: str | None = None, limit: int | None = None,
                             offset: int | None = None, *, config: Config | None = None) -> list[ExecutionInfo]:
    config = _config(config)
    with Store(config).session() as s:
        workflow = _get_workflow_row(s, _ns(config, namespace), workflow_name)
        rows = s.scalars(select(ExecutionRow).where(ExecutionRow.workflow_id == workflow.id)
                         .order_by(ExecutionRow.begin_date.desc()).limit(limit).offset(offset))
        return [_execution_info(r, workflow) for r in rows]


def _command(execution_id: str, command: str, task: str | None, config: Config | None) -> ExecutionInfo:
    config = _config(config)
    with Store(config).session() as s:
        row, workflow = _execution_row(s, execution_id)
        info = _execution_info(row, workflow)
        if task is not None and task not in {t["name"] for t in json.loads(workflow.definition)["tasks"]}:
            raise NotFound(f"workflow {workflow.name} has no task {task!r}")
    messages.send(config, messages.inbox_command(info.namespace, info.workflow, command, execution_id, task))
    return info


def stop_workflow_execution(workflow_execution_id: str, *, config: Config | None = None) -> None:
    """Ask the scheduler to stop the execution and every try of it that is alive (asynchronous)."""
    _command(workflow_execution_id, "STOP_EXECUTION", None, config)


def stop_workflow_executions(workflow_name: str, namespace: str | None = None, *,
                             config: Config | None = None) -> list[str]:
    """Stop every unfinished execution of the workflow; returns their ids."""
    config = _config(config)
    ids = [e.id for e in list_workflow_executions(workflow_name, namespace, config=config)
           if WorkflowStatus(e.status) not in WORKFLOW_FINISHED_SET]
    for execution_id in ids:
        stop_workflow_execution(execution_id, config=config)
    return ids


def delete_workflow_execution(workflow_execution_id: str, *, config: Config | None = None) -> None:
    with Store(_config(config)).session() as s:
        row, _ = _execution_row(s, workflow_execution_id)
        if WorkflowStatus(row.status) not in WORKFLOW_FINISHED_SET:
            raise Conflict(f"workflow execution {workflow_execution_id} is {row.status}: stop it first")
        s.delete(row)


def start_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    """START the task in the execution (a no-op while a try of it is alive)."""
    _command(workflow_execution_id, "START_TASK", task_name, config)


def stop_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    _command(workflow_execution_id, "STOP_TASK", task_name, config)


def restart_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    _command(workflow_execution_id, "RESTART_TASK", task_name, config)


def list_task_executions(workflow_execution_id: str, *, config: Config | None = None) -> list[TaskExecutionInfo]:
    with Store(_config(config)).session() as s:
        _execution_row(s, workflow_execution_id)
        rows = s.scalars(select(TaskExecutionRow).where(TaskExecutionRow.execution_id == workflow_execution_id)
                         .order_by(TaskExecutionRow.begin_date, TaskExecutionRow.task_name,
                                   TaskExecutionRow.try_number))
        return [_task_info(r) for r in rows]


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


def task_log_path(workflow_execution_id: str, task_name: str, try_number: int | None = None, *,
                  config: Config | None = None) -> Path:
    """Where the worker writes the try's output (on the worker's machine)."""
    config = _config(config)
    info = get_task_execution(workflow_execution_id, task_name, try_number, config=config)
    execution = get_workflow_execution(workflow_execution_id, config=config)
    assert execution is not None
    return config.home / "logs" / execution.workflow / workflow_execution_id / task_name / f"{info.try_number}.log"


# -- triggers and schedules -------------------------------------------------------------------
@dataclass
class TriggerInfo:
    id: int
    namespace: str
    workflow: str
    condition: dict[str, Any]
    is_paused: bool
    create_time: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "create_time": self.create_time.isoformat()}


@dataclass
class ScheduleInfo:
    id: int
    namespace: str
    workflow: str
    expression: str
    is_paused: bool
    create_time: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "create_time": self.create_time.isoformat()}


def _trigger_info(row: TriggerRow, workflow: WorkflowRow) -> TriggerInfo:
    return TriggerInfo(row.id, workflow.namespace, workflow.name, json.loads(row.definition), row.is_paused,
                       _aware(row.create_time))


def _schedule_info(row: ScheduleRow, workflow: WorkflowRow) -> ScheduleInfo:
    return ScheduleInfo(row.id, workflow.namespace, workflow.name, row.expression, row.is_paused,
                        _aware(row.create_time))


def add_workflow_trigger(rule: WorkflowRule, workflow_name: str, namespace: str | None = None, *,
                         config: Config | None = None) -> TriggerInfo:
    """Start a new execution of the workflow (run type EVENT) whenever the rule's condition is met."""
    config = _config(config)
    if not isinstance(rule, WorkflowRule):
        raise WorkflowFileError("add_workflow_trigger needs a WorkflowRule(condition)")
    spec = condition_to_spec(rule.condition)
    with Store(config).session() as s:
        workflow = _get_workflow_row(s, _ns(config, namespace), workflow_name)
        row = TriggerRow(workflow_id=workflow.id, definition=json.dumps(spec), is_paused=False,
                         create_time=datetime.now(timezone.utc))
        s.add(row)
        s.flush()
        _publish(s, config, workflow)
        return _trigger_info(row, workflow)


def list_workflow_triggers(workflow_name: str, namespace: str | None = None, *,
                           config: Config | None = None) -> list[TriggerInfo]:
    config = _config(config)
    with Store(config).session() as s:
        workflow = _get_workflow_row(s, _ns(config, namespace), workflow_name)
        rows = s.scalars(select(TriggerRow).where(TriggerRow.workflow_id == workflow.id).order_by(TriggerRow.id))
        return [_trigger_info(r, workflow) for r in rows]


def _trigger(s: Session, trigger_id: int) -> tuple[TriggerRow, WorkflowRow]:
    row = s.get(TriggerRow, trigger_id)
    if row is None:
        raise NotFound(f"workflow trigger {trigger_id} does not exist")
    workflow = s.get(WorkflowRow, row.workflow_id)
    assert workflow is not None
    return row, workflow


def get_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> TriggerInfo:
    with Store(_config(config)).session() as s:
        return _trigger_info(*_trigger(s, trigger_id))


def _set_trigger_paused(trigger_id: int, paused: bool, config: Config | None) -> TriggerInfo:
    config = _config(config)
    with Store(config).session() as s:
        row, workflow = _trigger(s, trigger_id)
        row.is_paused = paused
        s.flush()
        _publish(s, config, workflow)
        return _trigger_info(row, workflow)


def pause_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> TriggerInfo:
    return _set_trigger_paused(trigger_id, True, config)


def resume_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> TriggerInfo:
    return _set_trigger_paused(trigger_id, False, config)


def delete_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> None:
    config = _config(config)
    with Store(config).session() as s:
        row, workflow = _trigger(s, trigger_id)
        s.delete(row)
        s.flush()
        _publish(s, config, workflow)


def add_workflow_schedule(expression: str, workflow_name: str, namespace: str | None = None, *,
                          config: Config | None = None) -> ScheduleInfo:
    """Start a new execution (run type PERIODIC) on the schedule: `cron@...` (UTC) or `interval@d h m s`."""
    config = _config(config)
    parse_expression(expression)
    with Store(config).session() as s:
        workflow = _get_workflow_row(s, _ns(config, namespace), workflow_name)
        row = ScheduleRow(workflow_id=workflow.id, expression=expression, is_paused=False,
                          create_time=datetime.now(timezone.utc))
        s.add(row)
        s.flush()
        _publish(s, config, workflow)
        return _schedule_info(row, workflow)


def list_workflow_schedules(workflow_name: str, namespace: str | None = None, *,
                            config: Config | None = None) -> list[ScheduleInfo]:
    config = _config(config)
    with Store(config).session() as s:
        workflow = _get_workflow_row(s, _ns(config, namespace), workflow_name)
        rows = s.scalars(select(ScheduleRow).where(ScheduleRow.workflow_id == workflow.id).order_by(ScheduleRow.id))
        return [_schedule_info(r, workflow) for r in rows]


def _schedule(s: Session, schedule_id: int) -> tuple[ScheduleRow, WorkflowRow]:
    row = s.get(ScheduleRow, schedule_id)
    if row is None:
        raise NotFound(f"workflow schedule {schedule_id} does not exist")
    workflow = s.get(WorkflowRow, row.workflow_id)
    assert workflow is not None
    return row, workflow


def get_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> ScheduleInfo:
    with Store(_config(config)).session() as s:
        return _schedule_info(*_schedule(s, schedule_id))


def _set_schedule_paused(schedule_id: int, paused: bool, config: Config | None) -> ScheduleInfo:
    config = _config(config)
    with Store(config).session() as s:
        row, workflow = _schedule(s, schedule_id)
        row.is_paused = paused
        s.flush()
        _publish(s, config, workflow)
        return _schedule_info(row, workflow)


def pause_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> ScheduleInfo:
    return _set_schedule_paused(schedule_id, True, config)


def resume_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> ScheduleInfo:
    return _set_schedule_paused(schedule_id, False, config)


def delete_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> None:
    config = _config(config)
    with Store(config).session() as s:
        row, workflow = _schedule(s, schedule_id)
        s.delete(row)
        s.flush()
        _publish(s, config, workflow)
