"""`aiflow workflow-trigger ...` and `aiflow workflow-schedule ...`."""

from __future__ import annotations

import click

from aiflow.cli.common import load_config, namespace_option
from aiflow.cli.output import emit, emit_result, output_option

TRIGGER_COLUMNS = ["id", "namespace", "workflow", "condition", "is_paused", "pause_reason", "create_time"]
SCHEDULE_COLUMNS = ["id", "namespace", "workflow", "expression", "is_paused", "pause_reason", "create_time"]


@click.group("workflow-trigger")
def trigger_group() -> None:
    """Start an execution of a workflow when an event arrives (Python: ops.add_workflow_trigger for any condition)."""


@trigger_group.command("add")
@click.argument("workflow")
@click.option("--event-key", "event_keys", multiple=True, required=True,
              help="Start an execution when an event with this key arrives (repeat: any of them).")
@click.option("--event-namespace", default=None, help="Namespace of those events (default: the workflow's).")
@namespace_option
@output_option
def trigger_add(workflow: str, event_keys: tuple[str, ...], event_namespace: str | None, namespace: str | None,
                fmt: str) -> None:
    """Add a trigger to WORKFLOW."""
    from aiflow import MeetAnyCondition, SingleEventCondition, WorkflowRule, ops

    conditions = [SingleEventCondition(k, event_namespace) for k in event_keys]
    condition = conditions[0] if len(conditions) == 1 else MeetAnyCondition(conditions)
    info = ops.add_workflow_trigger(WorkflowRule(condition), workflow, namespace, config=load_config())
    if fmt == "table":
        click.echo(f"Workflow trigger {info.id} added to {info.namespace}.{info.workflow}.")
    else:
        emit(info.to_dict(), fmt)


@trigger_group.command("list")
@click.argument("workflow")
@namespace_option
@output_option
def trigger_list(workflow: str, namespace: str | None, fmt: str) -> None:
    """The triggers of WORKFLOW."""
    from aiflow import ops

    emit([t.to_dict() for t in ops.list_workflow_triggers(workflow, namespace, config=load_config())], fmt,
         TRIGGER_COLUMNS)


@trigger_group.command("show")
@click.argument("trigger_id", type=int)
@output_option
def trigger_show(trigger_id: int, fmt: str) -> None:
    """One trigger."""
    from aiflow import ops

    emit(ops.get_workflow_trigger(trigger_id, config=load_config()).to_dict(), fmt)


def _verb(group: click.Group, kind: str, name: str, done: str, help_text: str) -> None:
    """`pause`, `resume` or `delete` of a trigger or a schedule (`kind`) by id."""
    # The help goes to the decorator: click reads it there, a __doc__ set afterwards is never seen.
    @group.command(name, help=help_text)
    @click.argument(f"{kind}_id", type=int)
    @output_option
    def command(fmt: str, **ids: int) -> None:
        from aiflow import ops

        item_id = ids[f"{kind}_id"]
        result = getattr(ops, f"{name}_workflow_{kind}")(item_id, config=load_config())
        data = result.to_dict() if result is not None else {"id": item_id, "deleted": True}
        emit_result(f"Workflow {kind} {item_id} {done}.", data, fmt)


def _delete_all(group: click.Group, kind: str) -> None:
    @group.command("delete-all", help=f"Delete every {kind} of WORKFLOW.")
    @click.argument("workflow")
    @namespace_option
    @output_option
    def command(workflow: str, namespace: str | None, fmt: str) -> None:
        from aiflow import ops

        ids = getattr(ops, f"delete_workflow_{kind}s")(workflow, namespace, config=load_config())
        emit_result(f"Deleted {len(ids)} {kind}(s) of {workflow}" + (f": {', '.join(map(str, ids))}." if ids else "."),
                    {"workflow": workflow, "deleted": ids}, fmt)


_verb(trigger_group, "trigger", "pause", "paused",
      "Pause trigger TRIGGER_ID: its events start no execution until it is resumed.")
_verb(trigger_group, "trigger", "resume", "resumed", "Resume trigger TRIGGER_ID (also one paused by a rule error).")
_verb(trigger_group, "trigger", "delete", "deleted", "Delete trigger TRIGGER_ID.")
_delete_all(trigger_group, "trigger")


@click.group("workflow-schedule")
def schedule_group() -> None:
    """Start executions of a workflow on a schedule."""


@schedule_group.command("add")
@click.argument("workflow")
@click.argument("expression")
@namespace_option
@output_option
def schedule_add(workflow: str, expression: str, namespace: str | None, fmt: str) -> None:
    """Add a schedule: EXPRESSION is 'cron@<5 fields>' (UTC) or 'interval@<days> <hours> <minutes> <seconds>'."""
    from aiflow import ops

    info = ops.add_workflow_schedule(expression, workflow, namespace, config=load_config())
    if fmt == "table":
        click.echo(f"Workflow schedule {info.id} added to {info.namespace}.{info.workflow}: {info.expression}.")
    else:
        emit(info.to_dict(), fmt)


@schedule_group.command("list")
@click.argument("workflow")
@namespace_option
@output_option
def schedule_list(workflow: str, namespace: str | None, fmt: str) -> None:
    """The schedules of WORKFLOW."""
    from aiflow import ops

    emit([sc.to_dict() for sc in ops.list_workflow_schedules(workflow, namespace, config=load_config())], fmt,
         SCHEDULE_COLUMNS)


@schedule_group.command("show")
@click.argument("schedule_id", type=int)
@output_option
def schedule_show(schedule_id: int, fmt: str) -> None:
    """One schedule."""
    from aiflow import ops

    emit(ops.get_workflow_schedule(schedule_id, config=load_config()).to_dict(), fmt)


_verb(schedule_group, "schedule", "pause", "paused",
      "Pause schedule SCHEDULE_ID: it starts nothing until it is resumed.")
_verb(schedule_group, "schedule", "resume", "resumed", "Resume schedule SCHEDULE_ID.")
_verb(schedule_group, "schedule", "delete", "deleted", "Delete schedule SCHEDULE_ID.")
_delete_all(schedule_group, "schedule")
