"""Snapshots: the stored versions of a workflow, one per upload that changed its file, artifacts or definition."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aiflow.config import Config
from aiflow.errors import Conflict, NotFound
from aiflow.ops._common import _aware, _count_unfinished, _workflow_session
from aiflow.ops._dispatch import _config, _via_api
from aiflow.ops.workflows import _publish_workflow
from aiflow.store.blobs import blob_store
from aiflow.store.models import ExecutionRow, SnapshotRow, WorkflowRow


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


def _snapshot_info(workflow: WorkflowRow, row: SnapshotRow) -> SnapshotInfo:
    return SnapshotInfo(workflow.namespace, workflow.name, row.version, row.uri, row.sha256, row.workflow_file,
                        _aware(row.create_time), json.loads(row.definition))


def _snapshot_row(s: Session, row: WorkflowRow, version: int) -> SnapshotRow:
    snap = s.scalar(select(SnapshotRow).where(SnapshotRow.workflow_id == row.id, SnapshotRow.version == version))
    if snap is None:
        raise NotFound(f"workflow {row.namespace}.{row.name} has no snapshot version {version}")
    return snap


@_via_api
def list_workflow_snapshots(workflow_name: str, namespace: str | None = None, limit: int | None = None,
                            offset: int | None = None, *, config: Config | None = None) -> list[SnapshotInfo]:
    with _workflow_session(_config(config), namespace, workflow_name) as (s, row):
        snaps = s.scalars(select(SnapshotRow).where(SnapshotRow.workflow_id == row.id)
                          .order_by(SnapshotRow.version.desc()).limit(limit).offset(offset))
        return [_snapshot_info(row, snap) for snap in snaps]


@_via_api
def get_workflow_snapshot(workflow_name: str, version: int, namespace: str | None = None, *,
                          config: Config | None = None) -> SnapshotInfo:
    with _workflow_session(_config(config), namespace, workflow_name) as (s, row):
        return _snapshot_info(row, _snapshot_row(s, row, version))


@_via_api
def delete_workflow_snapshot(workflow_name: str, version: int, namespace: str | None = None, *,
                             config: Config | None = None) -> None:
    """Delete one earlier version. The latest, and any an unfinished execution runs, are kept."""
    config = _config(config)
    with _workflow_session(config, namespace, workflow_name) as (s, row):
        snap = _snapshot_row(s, row, version)
        if version == row.latest_version:
            raise Conflict(f"version {version} is the latest of {row.namespace}.{row.name}: upload a new version "
                           "first, or delete the workflow")
        in_use = _count_unfinished(s, row, ExecutionRow.snapshot_version == version)
        if in_use:
            raise Conflict(f"version {version} of {row.namespace}.{row.name} is used by {in_use} "
                           "unfinished execution(s)")
        uri = snap.uri
        s.delete(snap)
        s.flush()
        _publish_workflow(s, config, row)  # the version is no longer announced: nothing runs it any more
        # Uploads of the same content share the blob: keep it while another snapshot points to it.
        shared = s.scalar(select(func.count()).select_from(SnapshotRow).where(SnapshotRow.uri == uri))
    if not shared:
        blob_store(config).delete(uri)


def delete_workflow_snapshots(workflow_name: str, namespace: str | None = None, *,
                              config: Config | None = None) -> list[int]:
    """Delete every earlier version of the workflow that no unfinished execution runs; the latest is
    kept. Returns the versions deleted, newest first."""
    config = _config(config)
    snapshots = list_workflow_snapshots(workflow_name, namespace, config=config)
    deleted = []
    for snap in snapshots[1:]:  # newest first: the latest is never deleted
        try:
            delete_workflow_snapshot(workflow_name, snap.version, namespace, config=config)
        except Conflict:  # an unfinished execution runs it: kept
            continue
        deleted.append(snap.version)
    return deleted
