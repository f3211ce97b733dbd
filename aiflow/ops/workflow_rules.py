"""Triggers and schedules: the rules that start new executions of a workflow, on events or on a timetable.

Both are the same rows of one workflow (add, list, get, pause, resume, delete), and every change republishes
the workflow's definition, which carries them to the router and the scheduler: `_Rules` does that once for both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from sqlalchemy import select

from aiflow.config import Config
from aiflow.errors import WorkflowFileError
from aiflow.ops._common import _aware, _Info, _owned_row, _workflow_session
from aiflow.ops._dispatch import _config, _via_api
from aiflow.ops.workflows import _publish_workflow
from aiflow.sdk.conditions import WorkflowRule, condition_to_spec
from aiflow.sdk.expressions import parse_expression
from aiflow.store.db import Store
from aiflow.store.models import ScheduleRow, TriggerRow, WorkflowRow


@dataclass
class TriggerInfo(_Info):
    id: int
    namespace: str
    workflow: str
    condition: dict[str, Any]
    is_paused: bool
    create_time: datetime
    pause_reason: str = ""  # set when the scheduler could not evaluate it


@dataclass
class ScheduleInfo(_Info):
    id: int
    namespace: str
    workflow: str
    expression: str
    is_paused: bool
    create_time: datetime
    pause_reason: str = ""  # set when the scheduler could not evaluate it


def _trigger_info(row: TriggerRow, workflow: WorkflowRow) -> TriggerInfo:
    return TriggerInfo(row.id, workflow.namespace, workflow.name, json.loads(row.definition), row.is_paused,
                       _aware(row.create_time), row.pause_reason)


def _schedule_info(row: ScheduleRow, workflow: WorkflowRow) -> ScheduleInfo:
    return ScheduleInfo(row.id, workflow.namespace, workflow.name, row.expression, row.is_paused,
                        _aware(row.create_time), row.pause_reason)


RuleRow = TypeVar("RuleRow", TriggerRow, ScheduleRow)
RuleInfo = TypeVar("RuleInfo", TriggerInfo, ScheduleInfo)


class _Rules(Generic[RuleRow, RuleInfo]):
    """The rows of one kind of rule: `model` in the store, shown as `info`, named `noun` in errors."""

    def __init__(self, model: type[RuleRow], info: Callable[[RuleRow, WorkflowRow], RuleInfo], noun: str) -> None:
        self.model: type[RuleRow] = model
        self.info: Callable[[RuleRow, WorkflowRow], RuleInfo] = info
        self.noun = noun

    def add(self, workflow_name: str, namespace: str | None, config: Config, **fields: str) -> RuleInfo:
        """A new, active rule with `fields` (what the kind of rule holds, already checked)."""
        with _workflow_session(config, namespace, workflow_name) as (s, workflow):
            row = self.model(workflow_id=workflow.id, is_paused=False, create_time=datetime.now(timezone.utc),
                             **fields)
            s.add(row)
            s.flush()
            _publish_workflow(s, config, workflow)
            return self.info(row, workflow)

    def of_workflow(self, workflow_name: str, namespace: str | None, config: Config | None) -> list[RuleInfo]:
        with _workflow_session(_config(config), namespace, workflow_name) as (s, workflow):
            rows = s.scalars(select(self.model).where(self.model.workflow_id == workflow.id).order_by(self.model.id))
            return [self.info(r, workflow) for r in rows]

    def get(self, rule_id: int, config: Config | None) -> RuleInfo:
        with Store(_config(config)).session() as s:
            return self.info(*_owned_row(s, self.model, rule_id, self.noun))

    def set_paused(self, rule_id: int, paused: bool, config: Config | None) -> RuleInfo:
        config = _config(config)
        with Store(config).session() as s:
            row, workflow = _owned_row(s, self.model, rule_id, self.noun)
            row.is_paused = paused
            row.pause_reason = ""  # paused or resumed by hand: the scheduler's reason no longer holds
            s.flush()
            _publish_workflow(s, config, workflow)
            return self.info(row, workflow)

    def delete(self, rule_id: int, config: Config | None) -> None:
        config = _config(config)
        with Store(config).session() as s:
            row, workflow = _owned_row(s, self.model, rule_id, self.noun)
            s.delete(row)
            s.flush()
            _publish_workflow(s, config, workflow)


_TRIGGERS = _Rules(TriggerRow, _trigger_info, "workflow trigger")
_SCHEDULES = _Rules(ScheduleRow, _schedule_info, "workflow schedule")


# -- triggers --------------------------------------------------------------------------------
@_via_api
def add_workflow_trigger(rule: WorkflowRule, workflow_name: str, namespace: str | None = None, *,
                         config: Config | None = None) -> TriggerInfo:
    """Start a new execution of the workflow (run type EVENT) whenever the rule's condition is met."""
    config = _config(config)
    if not isinstance(rule, WorkflowRule):
        raise WorkflowFileError("add_workflow_trigger needs a WorkflowRule(condition)")
    return _TRIGGERS.add(workflow_name, namespace, config, definition=json.dumps(condition_to_spec(rule.condition)))


@_via_api
def list_workflow_triggers(workflow_name: str, namespace: str | None = None, *,
                           config: Config | None = None) -> list[TriggerInfo]:
    return _TRIGGERS.of_workflow(workflow_name, namespace, config)


@_via_api
def get_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> TriggerInfo:
    return _TRIGGERS.get(trigger_id, config)


@_via_api
def pause_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> TriggerInfo:
    return _TRIGGERS.set_paused(trigger_id, True, config)


@_via_api
def resume_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> TriggerInfo:
    return _TRIGGERS.set_paused(trigger_id, False, config)


@_via_api
def delete_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> None:
    _TRIGGERS.delete(trigger_id, config)


def delete_workflow_triggers(workflow_name: str, namespace: str | None = None, *,
                             config: Config | None = None) -> list[int]:
    """Delete every trigger of the workflow; returns their ids."""
    config = _config(config)
    ids = [t.id for t in list_workflow_triggers(workflow_name, namespace, config=config)]
    for trigger_id in ids:
        delete_workflow_trigger(trigger_id, config=config)
    return ids


# -- schedules -------------------------------------------------------------------------------
@_via_api
def add_workflow_schedule(expression: str, workflow_name: str, namespace: str | None = None, *,
                          config: Config | None = None) -> ScheduleInfo:
    """Start a new execution (run type PERIODIC) on the schedule: `cron@...` (UTC) or `interval@d h m s`."""
    config = _config(config)
    parse_expression(expression)
    return _SCHEDULES.add(workflow_name, namespace, config, expression=expression)


@_via_api
def list_workflow_schedules(workflow_name: str, namespace: str | None = None, *,
                            config: Config | None = None) -> list[ScheduleInfo]:
    return _SCHEDULES.of_workflow(workflow_name, namespace, config)


@_via_api
def get_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> ScheduleInfo:
    return _SCHEDULES.get(schedule_id, config)


@_via_api
def pause_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> ScheduleInfo:
    return _SCHEDULES.set_paused(schedule_id, True, config)


@_via_api
def resume_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> ScheduleInfo:
    return _SCHEDULES.set_paused(schedule_id, False, config)


@_via_api
def delete_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> None:
    _SCHEDULES.delete(schedule_id, config)


def delete_workflow_schedules(workflow_name: str, namespace: str | None = None, *,
                              config: Config | None = None) -> list[int]:
    """Delete every schedule of the workflow; returns their ids."""
    config = _config(config)
    ids = [sc.id for sc in list_workflow_schedules(workflow_name, namespace, config=config)]
    for schedule_id in ids:
        delete_workflow_schedule(schedule_id, config=config)
    return ids
