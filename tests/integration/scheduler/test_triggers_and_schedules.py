"""Workflow triggers, schedules and periodic tasks on the running system."""

from __future__ import annotations

import time

from aiflow import SingleEventCondition, WorkflowRule, ops
from tests.integration.scheduler.conftest import System

TWO_WORKFLOWS = """
from aiflow import Workflow, BashOperator, PythonOperator, EventClient

def announce():
    with EventClient() as client:
        client.send_event("data_ready", "batch 1")

with Workflow(name="producer"):
    PythonOperator(name="announce", python_callable=announce)

with Workflow(name="consumer"):
    BashOperator(name="consume", bash_command="true")
"""


def executions(system: System, workflow: str) -> list[ops.ExecutionInfo]:
    return ops.list_workflow_executions(workflow, config=system.config)


def test_an_event_from_one_workflow_triggers_another(system: System) -> None:
    system.upload(TWO_WORKFLOWS)
    trigger = ops.add_workflow_trigger(WorkflowRule(SingleEventCondition("data_ready")), "consumer",
                                       config=system.config)
    assert [t.id for t in ops.list_workflow_triggers("consumer", config=system.config)] == [trigger.id]
    ops.start_workflow_execution("producer", config=system.config)
    system.wait_for(lambda: len(executions(system, "consumer")) == 1, what="the trigger to start consumer")
    [started] = executions(system, "consumer")
    assert started.run_type == "EVENT" and started.cause.startswith(f"trigger {trigger.id} on event 'data_ready'")
    system.wait_for(lambda: system.status(started.id) == "SUCCESS", what="consumer to succeed")

    ops.pause_workflow_trigger(trigger.id, config=system.config)
    ops.start_workflow_execution("producer", config=system.config)
    system.wait_for(lambda: len(executions(system, "producer")) == 2
                    and all(e.status == "SUCCESS" for e in executions(system, "producer")), what="producer")
    time.sleep(1.5)
    assert len(executions(system, "consumer")) == 1  # paused: no second execution

    ops.resume_workflow_trigger(trigger.id, config=system.config)
    ops.disable_workflow("consumer", config=system.config)
    ops.start_workflow_execution("producer", config=system.config)
    system.wait_for(lambda: len(executions(system, "producer")) == 3
                    and all(e.status == "SUCCESS" for e in executions(system, "producer")), what="producer")
    time.sleep(1.5)
    assert len(executions(system, "consumer")) == 1  # disabled: triggers start nothing


SCHEDULED = """
from aiflow import Workflow, BashOperator

with Workflow(name="scheduled"):
    BashOperator(name="run", bash_command="true")
"""


def test_a_schedule_starts_executions_until_paused(system: System) -> None:
    system.upload(SCHEDULED)
    schedule = ops.add_workflow_schedule("interval@0 0 0 2", "scheduled", config=system.config)
    system.wait_for(lambda: len(executions(system, "scheduled")) >= 2, timeout=30, what="two scheduled runs")
    assert {e.run_type for e in executions(system, "scheduled")} == {"PERIODIC"}
    ops.pause_workflow_schedule(schedule.id, config=system.config)

    def quiet_for(seconds: float) -> bool:
        before = len(executions(system, "scheduled"))
        time.sleep(seconds)
        return len(executions(system, "scheduled")) == before

    # The pause reaches the scheduler through the workflows topic: once no run started for longer than the
    # interval, it has (and the store has the runs started before it); from then on none starts.
    system.wait_for(lambda: quiet_for(3.0), timeout=30, what="the pause to reach the scheduler")
    count = len(executions(system, "scheduled"))
    time.sleep(4.5)
    assert len(executions(system, "scheduled")) == count
    ops.delete_workflow_schedule(schedule.id, config=system.config)
    assert ops.list_workflow_schedules("scheduled", config=system.config) == []


PERIODIC = """
from aiflow import Workflow, BashOperator

with Workflow(name="periodic"):
    tick = BashOperator(name="tick", bash_command="true", periodic_expression="interval@0 0 0 2")
    after = BashOperator(name="after", bash_command="true")
    after.start_after(tick)
"""


def test_a_periodic_task_reruns_and_its_downstream_follows(system: System) -> None:
    system.upload(PERIODIC)
    execution_id = ops.start_workflow_execution("periodic", config=system.config)
    system.wait_for(lambda: len(system.tries(execution_id).get("after", [])) >= 2, timeout=30,
                    what="two runs of the downstream task")
    tries = ops.list_task_executions(execution_id, config=system.config)
    assert [t.cause for t in tries if t.task == "tick"][1].startswith("periodic interval@0 0 0 2")
    assert system.status(execution_id) == "RUNNING"  # a periodic task keeps its execution running
    ops.stop_workflow_execution(execution_id, config=system.config)
    system.wait_for(lambda: system.status(execution_id) == "STOPPED", what="the execution to stop")
