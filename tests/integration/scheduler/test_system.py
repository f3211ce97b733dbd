"""Workflows run by a real router, scheduler, projector and worker on the real broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aiflow import EventClient, ops
from aiflow.errors import Conflict
from aiflow.kafka import clients, topics
from tests.conftest import process_alive, read_topic
from tests.integration.scheduler.conftest import System

CHAIN = """
from pathlib import Path
from aiflow import Workflow, BashOperator, PythonOperator, TaskAction

def second():
    Path("second.txt").write_text("python ran after bash")

with Workflow(name="chain"):
    first = BashOperator(name="first", bash_command="echo first > first.txt")
    then = PythonOperator(name="second", python_callable=second)
    later = BashOperator(name="on_event", bash_command="echo $AIFLOW_EXECUTION_ID > event.txt")
    then.start_after(first)
    later.action_on_event_received(TaskAction.START, "go")
"""


def test_rules_run_tasks_and_the_execution_succeeds(system: System) -> None:
    system.upload(CHAIN)
    execution_id = ops.start_workflow_execution("chain", config=system.config)
    system.wait_for(lambda: system.tries(execution_id).get("second") == ["SUCCESS"], what="second to succeed")
    assert system.status(execution_id) == "RUNNING"  # on_event has not run yet
    with EventClient(system.config) as client:
        client.send_event("go")
    system.wait_for(lambda: system.status(execution_id) == "SUCCESS", what="the execution to succeed")

    folder = system.config.home / "working_dir" / "chain" / execution_id / "flow"
    assert (folder / "first.txt").read_text() == "first\n"
    assert (folder / "second.txt").read_text() == "python ran after bash"
    assert (folder / "event.txt").read_text() == f"{execution_id}\n"
    second = ops.get_task_execution(execution_id, "second", config=system.config)
    assert second.cause == "rule 1 of second (START) on first try 1 SUCCESS"
    assert ops.get_task_execution(execution_id, "on_event", config=system.config).cause.startswith(
        "rule 1 of on_event (START) on event 'go' at ")


SCOPED = """
from pathlib import Path
from aiflow import Workflow, BashOperator, PythonOperator, TaskAction, EventClient

def ping():
    with EventClient() as client:
        client.send_event("ping")

with Workflow(name="scoped"):
    BashOperator(name="keepalive", bash_command="sleep 1000")  # a streaming task: the execution runs on
    pinger = PythonOperator(name="pinger", python_callable=ping)
    BashOperator(name="listener", bash_command="true").action_on_event_received(TaskAction.START, "ping")
"""


def test_events_from_a_task_drive_only_its_own_execution_and_external_ones_drive_all(system: System) -> None:
    system.upload(SCOPED)
    first = ops.start_workflow_execution("scoped", config=system.config)
    system.wait_for(lambda: system.tries(first).get("listener") == ["SUCCESS"], what="first's listener")
    second = ops.start_workflow_execution("scoped", config=system.config)
    system.wait_for(lambda: system.tries(second).get("listener") == ["SUCCESS"], what="second's listener")
    time.sleep(1.0)
    assert system.tries(first)["listener"] == ["SUCCESS"]  # the second execution's ping did not reach it

    with EventClient(system.config) as client:
        client.send_event("ping")  # no execution: every running execution of the namespace
    for execution_id in (first, second):
        system.wait_for(lambda e=execution_id: system.tries(e)["listener"] == ["SUCCESS", "SUCCESS"],
                        what=f"{execution_id} to hear the external ping")
    with EventClient(system.config, namespace="elsewhere") as client:
        client.send_event("ping")
    time.sleep(1.5)
    assert system.tries(first)["listener"] == ["SUCCESS", "SUCCESS"]
    assert ops.stop_workflow_executions("scoped", config=system.config) == [second, first]


FAILING = """
from aiflow import Workflow, PythonOperator

def boom():
    print("about to fail")
    raise ValueError("boom: the input was bad")

with Workflow(name="failing"):
    PythonOperator(name="broken", python_callable=boom, max_retries=1)
"""


def test_a_failing_task_is_retried_then_fails_the_execution_with_its_error(system: System) -> None:
    system.upload(FAILING)
    execution_id = ops.start_workflow_execution("failing", config=system.config)
    system.wait_for(lambda: system.status(execution_id) == "FAILED", what="the execution to fail")
    tries = ops.list_task_executions(execution_id, config=system.config)
    assert [(t.try_number, t.status) for t in tries] == [(1, "FAILED"), (2, "FAILED")]
    assert tries[1].cause == "retry 1 of 1 after try 1 failed"
    assert tries[1].message.splitlines()[-1] == "ValueError: boom: the input was bad"
    log = ops.task_log_path(execution_id, "broken", 1, config=system.config).read_text()
    assert "about to fail" in log and "Traceback" in log


STREAMING = """
from aiflow import Workflow, BashOperator

with Workflow(name="streaming"):
    BashOperator(name="spawner",
                 bash_command="sleep 1000 & echo $! > child1.pid; sleep 1000 & echo $! > child2.pid; wait")
"""


def test_stopping_a_bash_task_leaves_none_of_its_processes(system: System) -> None:
    system.upload(STREAMING)
    execution_id = ops.start_workflow_execution("streaming", config=system.config)
    folder = system.config.home / "working_dir" / "streaming" / execution_id / "flow"
    system.wait_for(lambda: (folder / "child2.pid").exists() and (folder / "child2.pid").read_text().strip() != "",
                    what="the children to start")
    pids = [int((folder / f"child{i}.pid").read_text()) for i in (1, 2)]
    assert all(process_alive(p) for p in pids)
    ops.stop_workflow_execution(execution_id, config=system.config)
    system.wait_for(lambda: system.tries(execution_id).get("spawner") == ["STOPPED"], what="the task to stop")
    assert system.status(execution_id) == "STOPPED"
    system.wait_for(lambda: not any(process_alive(p) for p in pids), timeout=10, what="the children to be gone")




def test_a_disabled_workflow_starts_nothing(system: System) -> None:
    system.upload(CHAIN)
    ops.disable_workflow("chain", config=system.config)
    with pytest.raises(Conflict, match="disabled"):
        ops.start_workflow_execution("chain", config=system.config)


def test_an_unreadable_inbox_record_goes_to_the_dead_letter_topic_and_the_scheduler_carries_on(
        system: System) -> None:
    producer = clients.producer(system.config)
    producer.produce(topics.name(system.config, topics.INBOX), key=b"default/chain", value=b"\x00garbage")
    producer.flush(10)
    system.upload(CHAIN)
    execution_id = ops.start_workflow_execution("chain", config=system.config)
    system.wait_for(lambda: system.tries(execution_id).get("second") == ["SUCCESS"], what="the chain to run")
    dead = read_topic(system.config, topics.DLQ)
    assert [m.value() for m in dead] == [b"\x00garbage"]
    assert "no C3 01 marker" in dict(m for m in dead[0].headers())["aiflow.dlq.reason"].decode()



def test_db_rebuild_replays_the_topics_into_the_same_rows(system: System, tmp_path: Path) -> None:
    from sqlalchemy import select

    from aiflow import SingleEventCondition, WorkflowRule
    from aiflow.config import Config
    from aiflow.store.db import Store
    from aiflow.store.models import ExecutionRow, ScheduleRow, TaskExecutionRow, TriggerRow, WorkflowRow
    from aiflow.store.rebuild import rebuild

    system.upload(CHAIN)
    execution_id = ops.start_workflow_execution("chain", config=system.config)
    with EventClient(system.config) as client:
        client.send_event("go")
    system.wait_for(lambda: system.status(execution_id) == "SUCCESS", what="the execution to succeed")
    trigger = ops.add_workflow_trigger(WorkflowRule(SingleEventCondition("never")), "chain", config=system.config)
    ops.pause_workflow_trigger(trigger.id, config=system.config)
    ops.add_workflow_schedule("cron@0 0 1 1 *", "chain", config=system.config)
    time.sleep(1.0)

    def rows(config: Config) -> dict[str, list[tuple[object, ...]]]:
        with Store(config).session() as s:
            return {
                "executions": [(r.id, r.status, r.run_type, r.snapshot_version, r.cause)
                               for r in s.scalars(select(ExecutionRow).order_by(ExecutionRow.id))],
                "tries": [(r.id, r.status, r.cause, r.message, r.worker, r.begin_date, r.end_date)
                          for r in s.scalars(select(TaskExecutionRow).order_by(TaskExecutionRow.id))],
                "workflows": [(r.namespace, r.name, r.is_enabled, r.latest_version, r.definition)
                              for r in s.scalars(select(WorkflowRow))],
                "triggers": [(r.id, r.definition, r.is_paused) for r in s.scalars(select(TriggerRow))],
                "schedules": [(r.id, r.expression, r.is_paused) for r in s.scalars(select(ScheduleRow))],
            }

    original = rows(system.config)
    assert len(original["tries"]) == 3 and original["triggers"][0][2] is True
    empty = Config.load(home=system.config.home, environ={
        "AIFLOW_KAFKA_BOOTSTRAP": system.config.bootstrap, "AIFLOW_TOPIC_PREFIX": system.config.topic_prefix,
        "AIFLOW_DB_URI": f"sqlite:///{tmp_path}/rebuilt.db"})
    report = rebuild(empty)
    assert (report.workflows, report.executions) == (1, 1)
    assert rows(empty) == original
