"""`aiflow workflow-execution ...` and `aiflow task-execution ...`."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from aiflow.cli.common import EXIT_TIMEOUT, end_at_once, exit_code_of, load_config, namespace_option
from aiflow.cli.output import emit, emit_result, output_option

if TYPE_CHECKING:
    from aiflow.config import Config

EXECUTION_COLUMNS = ["id", "workflow", "status", "run_type", "snapshot_version", "begin_date", "end_date", "message"]
TASK_COLUMNS = ["task", "try_number", "status", "begin_date", "end_date", "worker", "cause", "message"]


@click.group("workflow-execution")
def execution_group() -> None:
    """Start, watch and stop executions of a workflow."""


@execution_group.command("start")
@click.argument("workflow")
@click.option("--wait", is_flag=True,
              help="Wait until the execution ends; exit 0 if it SUCCEEDED, 1 if it FAILED or was STOPPED, 3 on "
                   "--timeout.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="With --wait: give up waiting after this long (exit 3; the execution goes on).")
@namespace_option
@output_option
def start(workflow: str, wait: bool, timeout: float | None, namespace: str | None, fmt: str) -> None:
    """Start an execution of WORKFLOW's latest version: returns once Kafka holds the command and prints the
    execution's id (the scheduler records it a moment later; `-o json` waits for that and prints the
    execution, with its "id")."""
    from aiflow import ops

    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    end_at_once()
    config = load_config()
    say_scheduler = not wait and fmt in ("table", "plain")
    # Kafka connects while the store loads; whether a scheduler runs is then asked beside the start, not after it.
    ops.prepare_to_send(config=config, ask_schedulers=say_scheduler)
    if say_scheduler:
        execution_id = ops.start_workflow_execution(workflow, namespace, config=config, wait=0)
        click.echo(f"Workflow execution: {execution_id} submitted.")
        if ops.scheduler_running(config=config) is False:
            click.echo("note: no scheduler is running; the execution starts when one does "
                       "(`aiflow scheduler start -d`)", err=True)
        return
    execution_id = ops.start_workflow_execution(workflow, namespace, config=config, wait=0)
    if not ops.wait_for_execution(execution_id, 10, config=config):
        click.echo("note: no scheduler has taken it yet; it starts when one runs (`aiflow scheduler start -d`)",
                   err=True)
    if not wait:
        info = ops.get_workflow_execution(execution_id, config=config)
        emit_result(f"Workflow execution: {execution_id} submitted.",
                    info.to_dict() if info is not None else {"id": execution_id, "workflow": workflow,
                                                             "status": None}, fmt)
        return
    if fmt in ("table", "plain"):
        click.echo(f"Workflow execution: {execution_id} submitted; waiting for it to end.", err=True)
    status = _wait_until_finished(execution_id, timeout)
    if status is None:
        _show(execution_id, fmt)
        click.echo(f"Workflow execution {execution_id} has not ended after {timeout:g} s.", err=True)
        raise SystemExit(EXIT_TIMEOUT)
    _show(execution_id, fmt)
    raise SystemExit(exit_code_of(status))


def _ended(execution_id: str, status: str, config: Config) -> bool:
    """Whether the execution has its final status and none of its tries is still queued, running or stopping:
    an execution ends as soon as one task fails or stops, and its other tries are stopped after that."""
    from aiflow import ops
    from aiflow.sdk.status import TASK_ALIVE_SET, WORKFLOW_FINISHED_SET, TaskStatus, WorkflowStatus

    return WorkflowStatus(status) in WORKFLOW_FINISHED_SET and not any(
        TaskStatus(t.status) in TASK_ALIVE_SET for t in ops.list_task_executions(execution_id, config=config))


def _wait_until_finished(execution_id: str, timeout: float | None) -> str | None:
    """The execution's final status once it has ended, its tries too; None if `timeout` seconds pass first."""
    from aiflow import ops
    from aiflow.errors import NotFound

    config = load_config()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        info = ops.get_workflow_execution(execution_id, config=config)
        if info is not None and _ended(execution_id, info.status, config):
            return str(info.status)
        if info is None and deadline is None:
            raise NotFound(f"workflow execution {execution_id} does not exist")
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


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
        emit(_one_line(tries), fmt, TASK_COLUMNS)
    return info.status


@execution_group.command("show")
@click.argument("execution_id")
@click.option("-w", "--watch", is_flag=True,
              help="Redraw until the execution ends; then exit 0 if it SUCCEEDED, 1 if it FAILED or was STOPPED.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="With --watch: stop watching after this long (exit 3).")
@output_option
def show(execution_id: str, watch: bool, timeout: float | None, fmt: str) -> None:
    """An execution with the tries of its tasks."""
    if timeout is not None and not watch:
        raise click.UsageError("--timeout goes with --watch")
    if not watch:
        _show(execution_id, fmt)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    redraw = fmt == "table"
    try:
        while True:
            if not redraw:  # json, yaml, plain: print once, at the end (or at the timeout)
                status = _wait_until_finished(execution_id, None if deadline is None
                                              else max(0.0, deadline - time.monotonic()))
                _show(execution_id, fmt)
                raise SystemExit(EXIT_TIMEOUT if status is None else exit_code_of(status))
            click.clear()
            status = _show(execution_id, fmt)
            if _ended(execution_id, status, load_config()):
                raise SystemExit(exit_code_of(status))
            if deadline is not None and time.monotonic() >= deadline:
                raise SystemExit(EXIT_TIMEOUT)
            time.sleep(1)
    except KeyboardInterrupt:
        pass


@execution_group.command("stop")
@click.argument("execution_id")
@output_option
def stop(execution_id: str, fmt: str) -> None:
    """Stop an execution and every task of it that runs."""
    from aiflow import ops

    end_at_once()
    ops.stop_workflow_execution(execution_id, config=load_config())
    emit_result(f"Workflow execution: {execution_id}, stopping.", {"id": execution_id, "stop_requested": True}, fmt)


@execution_group.command("stop-all")
@click.argument("workflow")
@namespace_option
@output_option
def stop_all(workflow: str, namespace: str | None, fmt: str) -> None:
    """Stop every unfinished execution of WORKFLOW."""
    from aiflow import ops

    end_at_once()
    ids = ops.stop_workflow_executions(workflow, namespace, config=load_config())
    emit_result(f"Stopping {len(ids)} execution(s) of {workflow}" + (f": {', '.join(ids)}." if ids else "."),
                {"workflow": workflow, "stopping": ids}, fmt)


@execution_group.command("delete")
@click.argument("execution_id")
@output_option
def delete(execution_id: str, fmt: str) -> None:
    """Delete a finished execution from the store."""
    from aiflow import ops

    ops.delete_workflow_execution(execution_id, config=load_config())
    emit_result(f"Workflow execution: {execution_id}, deleted.", {"id": execution_id, "deleted": True}, fmt)


@click.group("task-execution")
def task_group() -> None:
    """The tries of an execution's tasks."""


@task_group.command("list")
@click.argument("execution_id")
@output_option
def task_list(execution_id: str, fmt: str) -> None:
    """Every try of every task of EXECUTION_ID."""
    from aiflow import ops

    rows = [t.to_dict() for t in ops.list_task_executions(execution_id, config=load_config())]
    emit(_one_line(rows) if fmt in ("table", "plain") else rows, fmt, TASK_COLUMNS)


def _one_line(tries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tries with the first line of their message (a failure's last lines are in `task-execution show`),
    so a table has one line a try; it shows why a QUEUED try waits ("waiting: no live worker ...")."""
    return [{**t, "message": (t["message"] or "").strip().split("\n")[0][:100]} for t in tries]


@task_group.command("show")
@click.argument("execution_id")
@click.argument("task")
@click.option("--try", "try_number", type=int, default=None, help="Which try (default: the latest).")
@output_option
def task_show(execution_id: str, task: str, try_number: int | None, fmt: str) -> None:
    """One try of TASK: status, times, cause, and for a failure the error's last lines."""
    from aiflow import ops

    emit(ops.get_task_execution(execution_id, task, try_number, config=load_config()).to_dict(), fmt)


def _task_command(name: str, verb: str, help_text: str) -> None:
    # The help goes to the decorator: click reads it there, a __doc__ set afterwards is never seen.
    @task_group.command(name, help=help_text)
    @click.argument("execution_id")
    @click.argument("task")
    @output_option
    def command(execution_id: str, task: str, fmt: str) -> None:
        from aiflow import ops

        end_at_once()
        getattr(ops, f"{name}_task_execution")(execution_id, task, config=load_config())
        emit_result(f"Task {task} of {execution_id}: {verb}.",
                    {"execution_id": execution_id, "task": task, "requested": name}, fmt)


_task_command("start", "start requested",
              "Start TASK in EXECUTION_ID (a new try); refused while a try of it is queued or running.")
_task_command("stop", "stop requested", "Stop the running try of TASK in EXECUTION_ID.")
_task_command("restart", "restart requested",
              "Stop TASK's running try in EXECUTION_ID, if any, and start a new one.")


@task_group.command("logs")
@click.argument("execution_id")
@click.argument("task")
@click.option("--try", "try_number", type=int, default=None, help="Which try (default: the latest).")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing what the task writes until the try ends and its output is complete (or Ctrl-C).")
@output_option
def task_logs(execution_id: str, task: str, try_number: int | None, follow: bool, fmt: str) -> None:
    """The output of a try: from this machine's $AIFLOW_HOME/logs when the try ran here, else from the logs
    topic (any machine that reaches Kafka). As json or yaml: an object with the text; with --follow, one JSON
    object per line."""
    from aiflow import ops

    config = load_config()
    if not follow:
        piece = ops.read_task_log(execution_id, task, try_number, config=config)
        if fmt in ("json", "yaml"):
            emit({"execution_id": piece.execution_id, "task": piece.task, "try_number": piece.try_number,
                  "source": piece.source, "ended": piece.ended, "text": piece.text}, fmt)
        else:
            click.echo(piece.text, nl=False)
        return
    pending = ""
    try:
        for piece in ops.follow_task_log(execution_id, task, try_number, config=config):
            if fmt not in ("json", "yaml"):
                if piece.text:
                    click.echo(piece.text, nl=False)
                continue
            about = {"execution_id": piece.execution_id, "task": piece.task, "try_number": piece.try_number,
                     "source": piece.source}
            *lines, pending = (pending + piece.text).split("\n")
            if piece.ended and pending:
                lines, pending = [*lines, pending], ""
            for line in lines:
                click.echo(json.dumps({**about, "line": line}))
    except KeyboardInterrupt:
        pass
