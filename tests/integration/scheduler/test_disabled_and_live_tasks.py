"""A disabled workflow's running executions, and a START of a live task: real services on the real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from aiflow import EventClient, ops
from aiflow.errors import Conflict
from aiflow.ops._publish import send_inbox_command
from aiflow.protocol.commands import Command
from aiflow.web.api import create_app
from tests.integration.scheduler.conftest import System

SWITCH = """
from aiflow import Workflow, BashOperator, TaskAction

with Workflow(name="switch"):
    BashOperator(name="keepalive", bash_command="sleep 1000")  # a streaming task: the execution runs on
    BashOperator(name="on_go", bash_command="true").action_on_event_received(TaskAction.START, "go")
"""

SETTLE = 3.0  # long enough for the router and the scheduler to read a definition just published


@pytest.fixture
def running(system: System) -> Iterator[str]:
    system.upload(SWITCH)
    execution_id = ops.start_workflow_execution("switch", config=system.config)
    system.wait_for(lambda: system.tries(execution_id).get("keepalive") == ["RUNNING"], what="keepalive to run")
    yield execution_id
    ops.stop_workflow_execution(execution_id, config=system.config)


def test_a_disabled_workflows_running_execution_ignores_events_until_it_is_enabled(system: System,
                                                                                   running: str) -> None:
    ops.disable_workflow("switch", config=system.config)
    time.sleep(SETTLE)
    with EventClient(system.config) as client:
        client.send_event("go")
    time.sleep(SETTLE)
    assert system.tries(running) == {"keepalive": ["RUNNING"]}  # nothing started; what ran runs on
    assert system.status(running) == "RUNNING"

    ops.enable_workflow("switch", config=system.config)
    time.sleep(SETTLE)
    with EventClient(system.config) as client:
        client.send_event("go")
    system.wait_for(lambda: system.tries(running).get("on_go") == ["SUCCESS"], what="on_go after enabling")


def test_starting_a_live_task_is_refused_with_the_reason(system: System, running: str) -> None:
    with pytest.raises(Conflict, match=rf"^task 'keepalive' of execution {running} is RUNNING \(try 1\): stop it "
                                       "first or use task-execution restart$"):
        ops.start_task_execution(running, "keepalive", config=system.config)
    with TestClient(create_app(system.config), base_url="http://127.0.0.1") as api:
        answer = api.post(f"/api/v1/executions/{running}/tasks/keepalive/start")
    assert answer.status_code == 409
    assert answer.json()["detail"] == (f"task 'keepalive' of execution {running} is RUNNING (try 1): stop it first "
                                       "or use task-execution restart")

    # A START that reaches the scheduler all the same (the store was behind) is passed over, and the
    # execution says why.
    send_inbox_command(system.config, "default", "switch", Command.START_TASK, running, "keepalive")
    system.wait_for(lambda: "ignored" in (ops.get_workflow_execution(running, config=system.config).message
                                          if ops.get_workflow_execution(running, config=system.config) else ""),
                    what="the execution's message")
    info = ops.get_workflow_execution(running, config=system.config)
    assert info is not None and info.message == ("command START_TASK ignored: task 'keepalive' is RUNNING (try 1): "
                                                 "stop it first, or restart it")
    assert system.tries(running)["keepalive"] == ["RUNNING"]

    ops.stop_workflow_execution(running, config=system.config)
    system.wait_for(lambda: system.status(running) == "STOPPED", what="the execution to stop")
    with pytest.raises(Conflict, match=rf"workflow execution {running} is STOPPED: it starts no task any more"):
        ops.start_task_execution(running, "on_go", config=system.config)
