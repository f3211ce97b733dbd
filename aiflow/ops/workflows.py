"""Workflows: storing and publishing those of an uploaded file (ops.uploads loads it), and what the store and the
workflows topic say about each."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aiflow.config import Config
from aiflow.errors import AIFlowError, Conflict, NotFound
from aiflow.ops._common import _aware, _count_unfinished, _get_workflow_row, _latest_snapshot, _workflow_session
from aiflow.ops._dispatch import _config, _ns, _via_api
from aiflow.ops._publish import prepare_to_publish, publish_definition, publish_deletion
from aiflow.sdk.conditions import condition_from_spec
from aiflow.store import snapshots
from aiflow.store.blobs import blob_store
from aiflow.store.db import Store
from aiflow.store.models import NamespaceRow, ScheduleRow, SnapshotRow, TriggerRow, WorkflowRow

if TYPE_CHECKING:
    from aiflow.ops.uploads import WorkflowLoading
    from aiflow.protocol.messages import WorkflowDefinition


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


def _workflow_info(row: WorkflowRow) -> WorkflowInfo:
    return WorkflowInfo(row.namespace, row.name, row.latest_version, row.is_enabled, row.workflow_file,
                        _aware(row.create_time), _aware(row.update_time), json.loads(row.definition))


def _definition(s: Session, row: WorkflowRow, snapshot: SnapshotRow) -> WorkflowDefinition:
    """The workflow's whole current definition: snapshot, flag, rule keys, triggers and schedules, and the
    event keys of the active triggers (the router indexes those)."""
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
    from aiflow.protocol.messages import WorkflowDefinition

    return WorkflowDefinition(
        namespace=row.namespace, workflow=row.name, version=snapshot.version, snapshot_uri=snapshot.uri,
        snapshot_sha256=snapshot.sha256, workflow_file=snapshot.workflow_file, enabled=row.is_enabled,
        rule_keys=tuple((k["namespace"], k["key"]) for k in described.get("event_keys", [])),
        trigger_keys=tuple(trigger_keys), definition=snapshot.definition, triggers=json.dumps(triggers),
        schedules=json.dumps(schedules),
        snapshots=tuple((v.version, v.uri, v.sha256, v.workflow_file) for v in s.scalars(
            select(SnapshotRow).where(SnapshotRow.workflow_id == row.id).order_by(SnapshotRow.version))))


def _publish_workflow(s: Session, config: Config, row: WorkflowRow, snapshot: SnapshotRow | None = None) -> None:
    """Publish the workflow's whole current definition (of its latest snapshot unless given) on the workflows
    topic; returns once it is durable. Called inside the session that changed the workflow, before its commit."""
    publish_definition(config, _definition(s, row, snapshot or _latest_snapshot(s, row)))


def store_upload(loading: WorkflowLoading, artifacts: list[Path], config: Config) -> list[WorkflowInfo]:
    """The rest of `upload_workflows` once the file is loading: pack the snapshot, open the store and make
    the Kafka producer ready while it loads, then store and publish each workflow it describes."""
    path = loading.path
    with tempfile.TemporaryDirectory(prefix="aiflow-upload-") as tmp:
        try:
            store = Store(config)
            blobs = blob_store(config)
            packed = snapshots.pack(path, artifacts, Path(tmp))
            store.ensure_schema()
            prepare_to_publish(config)
        except AIFlowError:
            loading.result()  # a file that does not load says so first, as when nothing was done before loading it
            raise
        described = loading.result()
        results: list[WorkflowInfo] = []
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
                _publish_workflow(s, config, row, latest)
                results.append(_workflow_info(row))
    return results


@_via_api
def get_workflow(workflow_name: str, namespace: str | None = None, *,
                 config: Config | None = None) -> WorkflowInfo | None:
    config = _config(config)
    with Store(config).session() as s:
        try:
            return _workflow_info(_get_workflow_row(s, _ns(config, namespace), workflow_name))
        except NotFound:
            return None


@_via_api
def list_workflows(namespace: str | None = None, limit: int | None = None, offset: int | None = None, *,
                   config: Config | None = None) -> list[WorkflowInfo]:
    config = _config(config)
    with Store(config).session() as s:
        rows = s.scalars(select(WorkflowRow).where(WorkflowRow.namespace == _ns(config, namespace))
                         .order_by(WorkflowRow.name).limit(limit).offset(offset))
        return [_workflow_info(r) for r in rows]


def _set_enabled(workflow_name: str, namespace: str | None, enabled: bool, config: Config | None) -> WorkflowInfo:
    config = _config(config)
    with _workflow_session(config, namespace, workflow_name) as (s, row):
        row.is_enabled = enabled
        row.update_time = datetime.now(timezone.utc)
        _publish_workflow(s, config, row)
        return _workflow_info(row)


@_via_api
def disable_workflow(workflow_name: str, namespace: str | None = None, *, config: Config | None = None) -> WorkflowInfo:
    """Stop the workflow from starting anything new: no triggers, schedules or manual starts."""
    return _set_enabled(workflow_name, namespace, False, config)


@_via_api
def enable_workflow(workflow_name: str, namespace: str | None = None, *, config: Config | None = None) -> WorkflowInfo:
    return _set_enabled(workflow_name, namespace, True, config)


@_via_api
def delete_workflow(workflow_name: str, namespace: str | None = None, *, config: Config | None = None) -> None:
    """Delete the workflow with its snapshots and finished executions; refused while one runs."""
    config = _config(config)
    namespace = _ns(config, namespace)
    with _workflow_session(config, namespace, workflow_name) as (s, row):
        unfinished = _count_unfinished(s, row)
        if unfinished:
            raise Conflict(f"workflow {namespace}.{workflow_name} has {unfinished} unfinished execution(s): "
                           "stop them first (`aiflow workflow-execution stop-all`)")
        uris = set(s.scalars(select(SnapshotRow.uri).where(SnapshotRow.workflow_id == row.id)))
        s.delete(row)
        s.flush()
        publish_deletion(config, namespace, workflow_name)
        # Workflows uploaded from one file share its blob: delete only the blobs no other snapshot points to.
        still_used = set(s.scalars(select(SnapshotRow.uri).where(SnapshotRow.uri.in_(uris))))
    blobs = blob_store(config)
    for uri in uris - still_used:
        blobs.delete(uri)
