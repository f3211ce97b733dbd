"""The Python API that the CLI and users share: namespaces, workflows and their snapshots.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aiflow.config import Config
from aiflow.errors import Conflict, NotFound, WorkflowFileError
from aiflow.kafka import workflows as workflow_topic
from aiflow.sdk.status import WORKFLOW_FINISHED_SET
from aiflow.sdk.workflow import NAMESPACE_ENV, check_name
from aiflow.store import snapshots
from aiflow.store.blobs import blob_store
from aiflow.store.db import Store
from aiflow.store.models import ExecutionRow, NamespaceRow, SnapshotRow, WorkflowRow

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


def _definition_record(row: WorkflowRow, snapshot: SnapshotRow) -> workflow_topic.WorkflowDefinition:
    described = json.loads(snapshot.definition)
    return workflow_topic.WorkflowDefinition(
        namespace=row.namespace, workflow=row.name, version=snapshot.version, snapshot_uri=snapshot.uri,
        snapshot_sha256=snapshot.sha256, workflow_file=snapshot.workflow_file, enabled=row.is_enabled,
        rule_keys=[(k["namespace"], k["key"]) for k in described.get("event_keys", [])])


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
                workflow_topic.publish(config, _definition_record(row, latest))
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
        workflow_topic.publish(config, _definition_record(row, _latest_snapshot(s, row)))
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
