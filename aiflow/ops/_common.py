"""What the subjects of ops that use the store need: UTC times, the base of the *Info records, and looking up a
workflow's rows (the config and namespace defaults and the client-mode switch are in `_dispatch`).

SQLAlchemy and the models are imported by the functions that use them: what ops.executions takes from here (the
records' base, the NotFound of a workflow) loads neither, so the commands that only read through store.reads never
import SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aiflow.config import Config
from aiflow.errors import NotFound
from aiflow.ops._dispatch import _ns
from aiflow.store.sqlite import aware as _aware  # noqa: F401 - for the modules of ops that read times

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Session

    from aiflow.store.models import ExecutionRow, ScheduleRow, SnapshotRow, TriggerRow, WorkflowRow

# The rows that belong to one workflow and are named by their own id.
OwnedRow = TypeVar("OwnedRow", "ExecutionRow", "TriggerRow", "ScheduleRow")


@dataclass
class _Info:
    """What ops returns about a row: a plain record, detached from the store session that read it."""

    def to_dict(self) -> dict[str, Any]:
        """The fields with datetimes as ISO strings, the way JSON and tables print them."""
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def _no_workflow(namespace: str, name: str) -> NotFound:
    return NotFound(f"workflow {namespace}.{name} does not exist (see `aiflow workflow list -n {namespace}`)")


def _get_workflow_row(s: Session, namespace: str, name: str) -> WorkflowRow:
    from sqlalchemy import select

    from aiflow.store.models import WorkflowRow

    row = s.scalar(select(WorkflowRow).where(WorkflowRow.namespace == namespace, WorkflowRow.name == name))
    if row is None:
        raise _no_workflow(namespace, name)
    return row


@contextmanager
def _workflow_session(config: Config, namespace: str | None, name: str) -> Iterator[tuple[Session, WorkflowRow]]:
    """A store session with the named workflow's row (NotFound if there is none); commits on leaving."""
    from aiflow.store.db import Store

    with Store(config).session() as s:
        yield s, _get_workflow_row(s, _ns(config, namespace), name)


def _latest_snapshot(s: Session, row: WorkflowRow) -> SnapshotRow:
    from sqlalchemy import select

    from aiflow.store.models import SnapshotRow

    snapshot = s.scalar(select(SnapshotRow).where(SnapshotRow.workflow_id == row.id,
                                                  SnapshotRow.version == row.latest_version))
    assert snapshot is not None, f"workflow {row.namespace}.{row.name} has no snapshot {row.latest_version}"
    return snapshot


def _count_unfinished(s: Session, workflow: WorkflowRow, *where: ColumnElement[bool]) -> int:
    """How many of the workflow's executions (those matching `where`) have not finished."""
    from sqlalchemy import func, select

    from aiflow.sdk.status import WORKFLOW_FINISHED_SET
    from aiflow.store.models import ExecutionRow

    return s.scalar(select(func.count()).select_from(ExecutionRow).where(
        ExecutionRow.workflow_id == workflow.id, *where,
        ExecutionRow.status.not_in([st.value for st in WORKFLOW_FINISHED_SET]))) or 0


def _owned_row(s: Session, model: type[OwnedRow], row_id: int | str, noun: str) -> tuple[OwnedRow, WorkflowRow]:
    """The row named by its id (NotFound "<noun> <id> does not exist" if none) with the workflow it belongs to."""
    from aiflow.store.models import WorkflowRow

    row = s.get(model, row_id)
    if row is None:
        raise NotFound(f"{noun} {row_id} does not exist")
    workflow = s.get(WorkflowRow, row.workflow_id)
    assert workflow is not None
    return row, workflow
