"""`aiflow db rebuild`: replay the topics into an empty store (the database is a projection of Kafka).

From the compacted workflows topic: each workflow, its latest snapshot, its triggers and schedules
(ids and paused flags kept), and the namespaces that hold them. From the state topic: the
executions it still holds, with the tries their records hold, as the projector writes them.

What Kafka does not keep is not rebuilt: snapshot versions older than the latest (compaction keeps
the last definition of a workflow), namespace properties, namespaces without workflows — and most
of the history of executions. The state topic is the scheduler's working state, not an archive: a
record keeps each task's latest try and a few earlier ones, and once the projector has written a
settled execution to the database it tombstones it, so compaction forgets it. Settled executions
come back from the database (its backups), not from the topic; a rebuild restores the active ones
and those settled ones whose records compaction has not removed yet (a tombstoned key's last record
is still used while it is there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select, text

from aiflow.config import Config
from aiflow.errors import Conflict
from aiflow.kafka import topics
from aiflow.kafka.readers import DefinitionFollower, read_state
from aiflow.store.db import Store
from aiflow.store.models import NamespaceRow, ScheduleRow, SnapshotRow, TriggerRow, WorkflowRow
from aiflow.store.projector import apply_execution


@dataclass
class RebuildReport:
    workflows: int
    executions: int


def rebuild(config: Config) -> RebuildReport:
    store = Store(config)
    with store.session() as s:
        if s.scalar(select(func.count()).select_from(WorkflowRow)):
            raise Conflict("the database already holds workflows: `aiflow db reset` it first, or point "
                           "AIFLOW_DB_URI at an empty one")
    follower = DefinitionFollower(config, "db-rebuild", follow=False)
    follower.catch_up()
    follower.close()
    now = datetime.now(timezone.utc)
    with store.session() as s:
        for (namespace, name), d in sorted(follower.definitions.items()):
            if s.get(NamespaceRow, namespace) is None:
                s.add(NamespaceRow(name=namespace, properties="{}", create_time=now))
                s.flush()
            row = WorkflowRow(namespace=namespace, name=name, is_enabled=d.enabled, latest_version=d.version,
                              workflow_file=d.workflow_file, definition=d.definition, create_time=now,
                              update_time=now)
            s.add(row)
            s.flush()
            s.add(SnapshotRow(workflow_id=row.id, version=d.version, uri=d.snapshot_uri, sha256=d.snapshot_sha256,
                              workflow_file=d.workflow_file, definition=d.definition, create_time=now))
            for t in json.loads(d.triggers):
                s.add(TriggerRow(id=t["id"], workflow_id=row.id, definition=json.dumps(t["condition"]),
                                 is_paused=bool(t.get("paused")), create_time=now))
            for sc in json.loads(d.schedules):
                s.add(ScheduleRow(id=sc["id"], workflow_id=row.id, expression=sc["expression"],
                                  is_paused=bool(sc.get("paused")), create_time=now))
        if s.get_bind().dialect.name == "postgresql":  # ids were given: move the sequences past them
            for table in ("workflow_trigger", "workflow_schedule"):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"))
    executions = _replay_state(config, store)
    return RebuildReport(len(follower.definitions), executions)


def _replay_state(config: Config, store: Store) -> int:
    state = read_state(config, range(topics.partition_count(config, topics.STATE)), "db-rebuild",
                       keep_tombstoned=True)
    entries = [record for _partition, record in state.values() if record.entity == "EXECUTION"]
    with store.session() as s:
        for record in entries:
            apply_execution(s, record.data())
    return len(entries)
