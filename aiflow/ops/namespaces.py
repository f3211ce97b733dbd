"""Namespaces: the groups workflows and events live in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select

from aiflow.config import Config
from aiflow.errors import Conflict, NotFound
from aiflow.ops._common import _aware, _Info
from aiflow.ops._dispatch import _config, _via_api
from aiflow.sdk.workflow import check_name
from aiflow.store.db import Store
from aiflow.store.models import NamespaceRow, WorkflowRow

DEFAULT_NAMESPACE = "default"


@dataclass
class NamespaceInfo(_Info):
    name: str
    properties: dict[str, str]
    create_time: datetime


def _namespace_info(row: NamespaceRow) -> NamespaceInfo:
    return NamespaceInfo(row.name, json.loads(row.properties or "{}"), _aware(row.create_time))


@_via_api
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


@_via_api
def get_namespace(name: str, *, config: Config | None = None) -> NamespaceInfo | None:
    with Store(_config(config)).session() as s:
        row = s.get(NamespaceRow, name)
        return _namespace_info(row) if row else None


@_via_api
def update_namespace(name: str, properties: dict[str, str], *, config: Config | None = None) -> NamespaceInfo:
    with Store(_config(config)).session() as s:
        row = s.get(NamespaceRow, name)
        if row is None:
            raise NotFound(f"namespace {name!r} does not exist")
        row.properties = json.dumps(properties)
        return _namespace_info(row)


@_via_api
def list_namespaces(limit: int | None = None, offset: int | None = None, *,
                    config: Config | None = None) -> list[NamespaceInfo]:
    with Store(_config(config)).session() as s:
        rows = s.scalars(select(NamespaceRow).order_by(NamespaceRow.name).limit(limit).offset(offset))
        return [_namespace_info(r) for r in rows]


@_via_api
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
