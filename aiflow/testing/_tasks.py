"""Running a try's operator in the test's own process, as a worker runs it in a process of its own.

The try runs with the task's environment (`AIFLOW_EXECUTION_ID`, `AIFLOW_TASK`, ...) and in the
harness's working directory, both put back afterwards. The event client's sending is redirected to
the harness for the duration: an event a task sends is stamped with the task, as in a deployment,
and delivered at once (to its own execution's rules and to every trigger), so nothing reaches Kafka.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from aiflow.protocol.messages import Event
from aiflow.scheduler.core import TaskTry
from aiflow.sdk.workflow import TaskRunContext

if TYPE_CHECKING:
    from aiflow.testing._harness import ExecutionHandle, WorkflowTest


def run_operator(harness: WorkflowTest, handle: ExecutionHandle, attempt: TaskTry) -> str | None:
    """Run the try's operator to its end; None if it succeeded, else why it failed."""
    ex = handle.state
    operator = handle.workflow.tasks[attempt.task]
    context = TaskRunContext(ex.namespace, ex.workflow, ex.id, attempt.task, attempt.try_number,
                             str(harness.working_dir))
    with ExitStack() as stack:
        stack.enter_context(_task_environment(ex.namespace, ex.workflow, ex.id, attempt.task, attempt.try_number))
        stack.enter_context(_working_dir(harness.working_dir))
        stack.enter_context(_events_to(harness))
        try:
            operator.start(context)
            operator.await_termination(context)
        except SystemExit as exc:  # as the task runner: sys.exit(0) succeeds
            return None if exc.code in (0, None) else f"SystemExit: {exc.code}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def _task_environment(namespace: str, workflow: str, execution_id: str, task: str, try_number: int) -> Iterator[None]:
    """The variables a worker gives a task (`aiflow.events` is where they are defined; it needs the event
    client's dependencies, which a task that sends events needs anyway: without them it runs with none)."""
    try:
        from aiflow.events.context import TaskContext
    except ImportError:
        yield
        return
    values = TaskContext(namespace, workflow, execution_id, task, try_number).to_env()
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextmanager
def _events_to(harness: WorkflowTest) -> Iterator[None]:
    """The event client sends to the harness while the task runs (and cannot listen: there is no broker)."""
    try:
        from aiflow.events import client as client_module
    except ImportError:  # the event client's dependencies are missing: no task can send an event either
        yield
        return
    from aiflow.testing._harness import WorkflowTestError

    def send_events(self: Any, items: Iterable[tuple[str, str | None]], *, namespace: str | None = None,
                    context: Mapping[str, str] | None = None) -> list[Event]:
        self._check_open()
        events: list[Event] = [self._new_event(k, v, namespace, context) for k, v in items]
        for event in events:
            event.checked_encode()  # the size and encoding checks of a real send
        return [harness._send(event) for event in events]

    def register_listener(self: Any, *args: Any, **kwargs: Any) -> str:
        raise WorkflowTestError("a task run in-process by aiflow.testing cannot listen to events (there is no "
                                "broker): end its try with succeed() or fail() instead of running it")

    with mock.patch.object(client_module.EventClient, "send_events", send_events), \
            mock.patch.object(client_module.EventClient, "register_listener", register_listener):
        yield
