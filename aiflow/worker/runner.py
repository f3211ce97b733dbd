"""The task process: `python -m aiflow.worker.runner WORKFLOW_FILE WORKFLOW TASK`.

It imports only the SDK and the event client — never the scheduler, the store or the CLI — loads the
workflow file from the execution's working directory (so `__file__`, relative paths and module-level
code behave as when the user runs the file), finds the task and runs it. Exit code 0 is SUCCESS;
an exception prints its traceback (which ends up in the task's log) and exits 1; SIGTERM calls the
operator's `stop` and exits 143.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from types import FrameType

from aiflow.events.context import TaskContext
from aiflow.process import stop_with_parent
from aiflow.sdk.loader import load_workflow
from aiflow.sdk.workflow import TaskRunContext

STOPPED_EXIT_CODE = 143


class _Stopped(BaseException):
    """Raised in the task's main thread when the worker asks it to stop."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stopped()


# How long a task whose worker is gone gets to stop on SIGTERM before it is killed.
ORPHAN_GRACE = 10.0


def main(argv: list[str], gate: Callable[[], None] | None = None) -> int:
    """Run the task; `gate`, when given, is called once the process is set up and must return before
    anything of the task runs (a try forked ahead waits there for its worker's go: zygote.py)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 3:
        print("usage: python -m aiflow.worker.runner WORKFLOW_FILE WORKFLOW TASK", file=sys.stderr)
        return 2
    path, workflow_name, task_name = argv
    task = TaskContext.from_env()
    if task is None:
        print("the task context (AIFLOW_EXECUTION_ID, AIFLOW_TASK, ...) is missing", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    log = logging.getLogger("aiflow.task")
    # A SIGKILLed worker must not leave tries running that nobody reports or stops: SIGTERM first (the
    # operator's `stop` runs), SIGKILL to the whole group if it is still there after ORPHAN_GRACE.
    stop_with_parent(ORPHAN_GRACE, log)
    if gate is not None:
        gate()
    log.info("starting task %s try %d of execution %s", task.task, task.try_number, task.execution_id)
    context: TaskRunContext | None = None
    operator = None
    try:
        workflow = load_workflow(path, task.namespace, workflow_name)
        operator = workflow.tasks.get(task_name)
        if operator is None:
            raise LookupError(f"workflow {workflow_name} has no task {task_name!r}")
        context = TaskRunContext(task.namespace, workflow_name, task.execution_id, task_name, task.try_number,
                                 os.getcwd())
        operator.start(context)
        operator.await_termination(context)
    except _Stopped:
        log.info("stop requested")
        if operator is not None and context is not None:
            try:
                operator.stop(context)
            except Exception:
                traceback.print_exc()
        return STOPPED_EXIT_CODE
    except BaseException as exc:  # everything the task raises fails it, SystemExit with non-zero too
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        traceback.print_exc()
        return 1
    log.info("task %s finished", task_name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
