"""`aiflow workflow-execution ...` and `aiflow task-execution ...`."""

from __future__ import annotations

import time

import click

from aiflow.cli.common import load_config, namespace_option
from aiflow.cli.output import emit, output_option

EXECUTION_COLUMNS = ["id", "workflow", "status", "run_type", "snapshot_version", "begin_date", "end_date", "message"]
TASK_COLUMNS = ["task", "try_number", "status", "begin_date", "end_date", "worker", "cause"]


@click.group("workflow-execution")
def execution_group() -> None:
    """Start, watch and stop executions of a workflow."""


@execution_group.command("start")
@click.argument("workflow")
@namespace_option
def start(workflow: str, namespace: str | None) -> None:
    """Start an execution of WORKFLOW's latest version."""
    from aiflow import ops

    config = load_config()
    execution_id = ops.start_workflow_execution(workflow, namespace, config=config, wait=0)
    click.echo(f"Workflow execution: {execution_id} submitted.")
    if not ops.wait_for_execution(execution_id, 10, config=config):
        click.echo("note: no scheduler has taken it yet; it starts when one runs (`aiflow scheduler start -d`)",
                   err=True)


@execution_group.command("list")
@click.argument("workflow")
@namespace_option
@output_option
def list_(workflow: str, namespace: str | None, fmt: str) -> None:
    """Executions of WORKFLOW, newest first."""
    from aiflow import ops

    emit([e.to_dict() for e in ops.list_workflow_executions(workflow, namespace, config=load_config())], fmt,
         EXECUTION_COLUMNS)


def _show(execution_id: str, fmt: str) -> str:
    from aiflow import ops
    from aiflow.errors import NotFound

    config = load_config()
    info = ops.get_workflow_execution(execution_id, config=config)
    if info is None:
        raise NotFound(f"workflow execution {execution_id} does not exist")
    data = info.to_dict()
    tries = [t.to_dict() for t in ops.list_task_executions(execution_id, config=config)]
    if fmt != "table":
        emit({**data, "tasks": tries}, fmt)
    else:
        emit(data, fmt)
        click.echo("")
        emit(tries, fmt, TASK_COLUMNS)
    return info.status


@execution_group.command("show")
@click.argument("execution_id")
@click.option("-w", "--watch", is_flag=True, help="Redraw until the execution ends (or Ctrl-C).")
@output_option
def show(execution_id: str, watch: bool, fmt: str) -> None:
    """An execution with the tries of its tasks."""
    if not watch:
        _show(execution_id, fmt)
        return
    from aiflow.sdk.status import WORKFLOW_FINISHED_SET, WorkflowStatus

    try:
        while True:
            click.clear()
            if WorkflowStatus(_show(execution_id, fmt)) in WORKFLOW_FINISHED_SET:
                return
            time.sleep(1)
    except KeyboardInterrupt:
        pass


@execution_group.command("stop")
@click.argument("execution_id")
def stop(execution_id: str) -> None:
    """Stop an execution and every task of it that runs."""
    from aiflow import ops

    ops.stop_workflow_execution(execution_id, config=load_config())
    click.echo(f"Workflow execution: {execution_id}, stopping.")


@execution_group.command("stop-all")
@click.argument("workflow")
@namespace_option
def stop_all(workflow: str, namespace: str | None) -> None:
    """Stop every unfinished execution of WORKFLOW."""
    from aiflow import ops

    ids = ops.stop_workflow_executions(workflow, namespace, config=load_config())
    click.echo(f"Stopping {len(ids)} execution(s) of {workflow}" + (f": {', '.join(ids)}." if ids else "."))


@execution_group.command("delete")
@click.argument("execution_id")
def delete(execution_id: str) -> None:
    """Delete a finished execution from the store."""
    from aiflow import ops

    ops.delete_workflow_execution(execution_id, config=load_config())
    click.echo(f"Workflow execution: {execution_id}, deleted.")


@click.group("task-execution")
def task_group() -> None:
    """The tries of an execution's tasks."""


@task_group.command("list")
@click.argument("execution_id")
@output_option
def task_list(execution_id: str, fmt: str) -> None:
    """Every try of every task of EXECUTION_ID."""
    from aiflow import ops

    emit([t.to_dict() for t in ops.list_task_executions(execution_id, config=load_config())], fmt, TASK_COLUMNS)


@task_group.command("show")
@click.argument("execution_id")
@click.argument("task")
@click.option("--try", "try_number", type=int, default=None, help="Which try (default: the latest).")
@output_option
def task_show(execution_id: str, task: str, try_number: int | None, fmt: str) -> None:
    """One try of TASK: status, times, cause, and for a failure the error's last lines."""
    from aiflow import ops

    emit(ops.get_task_execution(execution_id, task, try_number, config=load_config()).to_dict(), fmt)


def _task_command(name: str, verb: str) -> None:
    @task_group.command(name)
    @click.argument("execution_id")
    @click.argument("task")
    def command(execution_id: str, task: str) -> None:
        from aiflow import ops

        getattr(ops, f"{name}_task_execution")(execution_id, task, config=load_config())
        click.echo(f"Task {task} of {execution_id}: {verb}.")

    command.__doc__ = f"{name.upper()} TASK in EXECUTION_ID."


_task_command("start", "start requested")
_task_command("stop", "stop requested")
_task_command("restart", "restart requested")


@task_group.command("logs")
@click.argument("execution_id")
@click.argument("task")
@click.option("--try", "try_number", type=int, default=None, help="Which try (default: the latest).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the task writes, until Ctrl-C.")
def task_logs(execution_id: str, task: str, try_number: int | None, follow: bool) -> None:
    """The output of a try (from this machine's $AIFLOW_HOME/logs)."""
    from aiflow import ops
    from aiflow.errors import NotFound

    path = ops.task_log_path(execution_id, task, try_number, config=load_config())
    if not path.exists():
        raise NotFound(f"no log at {path}: the try ran on another machine, or has not started")
    with open(path, errors="replace") as f:
        try:
            while True:
                chunk = f.read()
                if chunk:
                    click.echo(chunk, nl=False)
                elif not follow:
                    return
                else:
                    time.sleep(0.3)
        except KeyboardInterrupt:
            pass
