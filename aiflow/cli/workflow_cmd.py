"""`aiflow workflow ...` and `aiflow workflow-snapshot ...`."""

from __future__ import annotations

from typing import Any

import click

from aiflow.cli.common import end_at_once, load_config, namespace_option
from aiflow.cli.output import emit, emit_result, output_option

WORKFLOW_COLUMNS = ["namespace", "name", "version", "is_enabled", "workflow_file", "update_time"]


@click.group("workflow")
def group() -> None:
    """Upload, inspect, disable and delete workflows."""


@group.command("upload")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--files", "files", multiple=True, type=click.Path(), metavar="PATH",
              help="A file or folder to ship with the workflow (repeatable; also space-separated after --files).")
@click.argument("more_files", nargs=-1, type=click.Path(), required=False)
@namespace_option
@output_option
def upload(file: str, files: tuple[str, ...], more_files: tuple[str, ...], namespace: str | None, fmt: str) -> None:
    """Upload the workflows defined in FILE, with its --files, as a new snapshot version."""
    from aiflow import ops

    end_at_once()
    infos = ops.upload_workflows(file, [*files, *more_files], namespace=namespace, config=load_config())
    if fmt == "table":
        for info in infos:
            click.echo(f"Workflow: {info.namespace}.{info.name}, submitted.")
            if not info.is_enabled:
                click.echo(f"  note: it is disabled; `aiflow workflow enable {info.name} -n {info.namespace}` "
                           "lets it start again")
    else:
        emit([i.to_dict() for i in infos], fmt, WORKFLOW_COLUMNS)


@group.command("list")
@namespace_option
@output_option
def list_(namespace: str | None, fmt: str) -> None:
    """The workflows of a namespace."""
    from aiflow import ops

    emit([w.to_dict() for w in ops.list_workflows(namespace, config=load_config())], fmt, WORKFLOW_COLUMNS)


@group.command("show")
@click.argument("name")
@namespace_option
@output_option
def show(name: str, namespace: str | None, fmt: str) -> None:
    """A workflow with its tasks and rules."""
    from aiflow import ops
    from aiflow.errors import NotFound

    config = load_config()
    info = ops.get_workflow(name, namespace, config=config)
    if info is None:
        raise NotFound(f"workflow {namespace or config.namespace}.{name} does not exist")
    data = info.to_dict(with_definition=True)
    if fmt != "table":
        emit(data, fmt)
        return
    emit({k: v for k, v in data.items() if k not in ("tasks", "rules", "event_keys")}, fmt)
    click.echo("")
    emit([{"task": t["name"], "operator": t["operator"], "periodic": t["periodic_expression"],
           "max_retries": t["max_retries"], "timeout": t["timeout"],
           "rules": "; ".join(_rule_text(r) for r in data["rules"].get(t["name"], []))}
          for t in data["tasks"]], fmt)


def _rule_text(rule: dict[str, Any]) -> str:
    condition = rule["condition"]
    if condition["type"] == "TaskStatusAllMetCondition":
        what = " and ".join(f"{c['task']} is {c['status']}" for c in condition["conditions"])
    elif condition["type"] == "SingleEventCondition":
        what = f"event {condition['event_keys'][0]}"
    else:
        what = f"{condition['type']}({', '.join(condition['event_keys'])})"
    return f"{rule['action']} when {what}"


@group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@namespace_option
@output_option
def delete(name: str, yes: bool, namespace: str | None, fmt: str) -> None:
    """Delete a workflow with its snapshots and finished executions."""
    from aiflow import ops

    config = load_config()
    ns = namespace or config.namespace
    if not yes:
        click.confirm(f"Delete workflow {ns}.{name} and all its history?", abort=True)
    ops.delete_workflow(name, ns, config=config)
    emit_result(f"Workflow: {ns}.{name}, deleted.", {"namespace": ns, "name": name, "deleted": True}, fmt)


@group.command("disable")
@click.argument("name")
@namespace_option
@output_option
def disable(name: str, namespace: str | None, fmt: str) -> None:
    """Start nothing new for this workflow: no triggers, schedules or manual starts."""
    from aiflow import ops

    info = ops.disable_workflow(name, namespace, config=load_config())
    emit_result(f"Workflow: {info.namespace}.{info.name}, disabled.", info.to_dict(), fmt)


@group.command("enable")
@click.argument("name")
@namespace_option
@output_option
def enable(name: str, namespace: str | None, fmt: str) -> None:
    """Let a disabled workflow start executions again."""
    from aiflow import ops

    info = ops.enable_workflow(name, namespace, config=load_config())
    emit_result(f"Workflow: {info.namespace}.{info.name}, enabled.", info.to_dict(), fmt)


@click.group("workflow-snapshot")
def snapshot_group() -> None:
    """The uploaded versions of a workflow."""


SNAPSHOT_COLUMNS = ["namespace", "workflow", "version", "sha256", "uri", "create_time"]


@snapshot_group.command("list")
@click.argument("workflow")
@namespace_option
@output_option
def snapshot_list(workflow: str, namespace: str | None, fmt: str) -> None:
    """The versions of WORKFLOW, newest first."""
    from aiflow import ops

    emit([s.to_dict() for s in ops.list_workflow_snapshots(workflow, namespace, config=load_config())], fmt,
         SNAPSHOT_COLUMNS)


@snapshot_group.command("show")
@click.argument("workflow")
@click.argument("version", type=int)
@namespace_option
@output_option
def snapshot_show(workflow: str, version: int, namespace: str | None, fmt: str) -> None:
    """One version of WORKFLOW."""
    from aiflow import ops

    snap = ops.get_workflow_snapshot(workflow, version, namespace, config=load_config())
    emit(snap.to_dict(with_definition=fmt != "table"), fmt)


@snapshot_group.command("delete")
@click.argument("workflow")
@click.argument("version", type=int)
@namespace_option
@output_option
def snapshot_delete(workflow: str, version: int, namespace: str | None, fmt: str) -> None:
    """Delete an earlier version of WORKFLOW (never the latest)."""
    from aiflow import ops

    ops.delete_workflow_snapshot(workflow, version, namespace, config=load_config())
    emit_result(f"Snapshot {version} of {workflow} deleted.", {"workflow": workflow, "deleted": [version]}, fmt)


@snapshot_group.command("delete-all")
@click.argument("workflow")
@namespace_option
@output_option
def snapshot_delete_all(workflow: str, namespace: str | None, fmt: str) -> None:
    """Delete every earlier version of WORKFLOW; the latest, and those unfinished executions run, are kept."""
    from aiflow import ops

    versions = ops.delete_workflow_snapshots(workflow, namespace, config=load_config())
    emit_result(f"Deleted {len(versions)} snapshot(s) of {workflow}"
                + (f": {', '.join(map(str, versions))}." if versions else "."),
                {"workflow": workflow, "deleted": versions}, fmt)
