"""aiflow.testing's WorkflowTest: the scheduler's core driven in-process, with a fake clock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiflow import (
    Operator,
    PythonOperator,
    SingleEventCondition,
    TaskAction,
    TaskStatus,
    TaskStatusCondition,
    Workflow,
)
from aiflow.testing import WorkflowTest, WorkflowTestError


def chain() -> Workflow:
    with Workflow(name="chain") as wf:
        a, b = Operator("a"), Operator("b")
        b.start_after(a)
    return wf


def test_a_workflow_file_is_loaded_with_every_workflow_in_it_and_one_must_be_named(tmp_path: Path) -> None:
    flow = tmp_path / "two.py"
    flow.write_text("from aiflow import Workflow, Operator\n"
                    "with Workflow(name='one'):\n    Operator('t')\n"
                    "with Workflow(name='two'):\n    Operator('u')\n")
    wt = WorkflowTest(flow, namespace="team")
    assert sorted(wt.workflows) == ["one", "two"] and wt.workflows["one"].namespace == "team"
    with pytest.raises(WorkflowTestError, match="several workflows"):
        wt.start()
    assert wt.start("two").queued() == ["u"]
    with pytest.raises(WorkflowTestError, match="no workflow 'three'"):
        wt.start("three")


def test_ending_a_try_that_is_not_in_play_says_why() -> None:
    ex = WorkflowTest(chain()).start()
    with pytest.raises(WorkflowTestError, match="cannot end task 'b': it was never started"):
        ex.succeed("b")
    with pytest.raises(WorkflowTestError, match="has no task 'nope'"):
        ex.succeed("nope")
    ex.succeed("a")
    with pytest.raises(WorkflowTestError, match=r"no try of it is in play \(try 1 is SUCCESS\)"):
        ex.fail("a")


def test_the_methods_of_the_harness_act_on_the_latest_execution() -> None:
    wt = WorkflowTest(chain())
    first = wt.start()
    second = wt.start()
    wt.succeed("a")
    assert wt.execution is second and second.task_status("b") == "QUEUED" and first.task_status("b") is None
    assert wt.started() == ["a", "b"] and wt.cause_of("b") == "rule 1 of b (START) on a try 1 SUCCESS"
    assert [e.id for e in wt.executions()] == ["e1", "e2"] and wt.execution_status == "RUNNING"


def test_assert_helpers_fail_with_the_timeline_of_the_execution() -> None:
    wt = WorkflowTest(chain())
    ex = wt.start()
    ex.assert_started("a", times=1, cause="execution started")
    ex.assert_not_started("b")
    with pytest.raises(AssertionError) as failed:
        ex.assert_started("b")
    assert "task 'b' was started 0 times, expected at least once" in str(failed.value)
    assert "+0s a#1 QUEUED" in str(failed.value)
    with pytest.raises(AssertionError, match="expected a cause containing 'event'"):
        ex.assert_started("a", cause="event")


def test_advance_fires_retries_and_timeouts_in_order_on_the_way() -> None:
    with Workflow(name="w") as wf:
        Operator("flaky", max_retries=1, retry_delay=30, timeout=60)
    wt = WorkflowTest(wf)
    ex = wt.start()
    ex.fail("flaky", "boom")
    assert ex.task_status("flaky") == "RETRYING"
    with pytest.raises(WorkflowTestError, match=r"waits to be retried at \+30s; advance the clock"):
        ex.succeed("flaky")
    wt.advance(30)
    assert ex.task_status("flaky") == "QUEUED" and ex.cause_of("flaky") == "retry 1 of 1 after try 1 failed"
    ex.running("flaky")
    wt.advance(60)
    assert ex.task_status("flaky") == "RUNNING"  # not longer than its timeout yet
    wt.advance(1)
    last = ex.latest("flaky")
    assert last is not None and last.status == "FAILED" and last.message == "timed out after 60.0 s"
    assert ex.status == "FAILED" and wt.elapsed == 91


def test_tries_wait_queued_and_running_as_long_as_the_test_wants() -> None:
    with Workflow(name="w") as wf:
        Operator("queued")
        Operator("running")
    wt = WorkflowTest(wf)
    ex = wt.start().running("running")
    wt.advance(7 * 24 * 3600)  # no queue timeout, no lost heartbeat
    assert ex.task_status("queued") == "QUEUED" and ex.task_status("running") == "RUNNING"


def test_stops_are_confirmed_at_once_unless_asked_not_to() -> None:
    with Workflow(name="w") as wf:
        t = Operator("t")
        t.action_on_event_received(TaskAction.RESTART, "again")
    wt = WorkflowTest(wf)
    ex = wt.start().running("t")
    wt.send_event("again")
    assert [(x.status, x.stop_reason) for x in ex.tries("t")] == [("STOPPED", "restart"), ("QUEUED", "")]

    slow = WorkflowTest(wf, confirm_stops=False)
    ex = slow.start().running("t")
    slow.send_event("again")
    assert ex.task_status("t") == "STOPPING"
    ex.stopped("t")
    assert [x.status for x in ex.tries("t")] == ["STOPPED", "QUEUED"]


def test_a_periodic_task_restarts_at_each_tick_of_the_clock() -> None:
    with Workflow(name="w") as wf:
        Operator("tick", periodic_expression="interval@0 0 0 1")
    wt = WorkflowTest(wf)
    ex = wt.start()
    for _ in range(30):
        ex.succeed("tick")
        wt.advance(1)
    assert [t.try_number for t in ex.tries("tick")] == list(range(1, 32))
    ex.assert_started("tick", times=31, cause="periodic interval@0 0 0 1")


def test_run_runs_the_callable_here_and_a_raise_fails_the_try(tmp_path: Path) -> None:
    calls: list[tuple[str, str]] = []

    def work(name: str) -> None:
        import os

        calls.append((name, os.environ["AIFLOW_TASK"]))
        Path("out.txt").write_text(name)  # in the working directory

    def broken() -> None:
        raise ValueError("bad input")

    with Workflow(name="w") as wf:
        PythonOperator("work", python_callable=work, op_args=["x"])
        PythonOperator("broken", python_callable=broken)
    ex = WorkflowTest(wf, working_dir=tmp_path).start()
    ex.run("work")
    assert calls == [("x", "work")] and (tmp_path / "out.txt").read_text() == "x"
    assert ex.task_status("work") == "SUCCESS"
    ex.run_tasks()
    last = ex.latest("broken")
    assert last is not None and last.status == "FAILED" and last.message == "ValueError: bad input"
    assert ex.status == "FAILED"


def test_events_sent_by_a_task_reach_its_own_execution_and_every_trigger() -> None:
    def announce() -> None:
        from aiflow import EventClient

        with EventClient() as client:
            client.send_event("done", "42")

    with Workflow(name="w") as wf:
        PythonOperator("announce", python_callable=announce).action_on_event_received(TaskAction.START, "go")
        Operator("after").action_on_event_received(TaskAction.START, "done")
    wt = WorkflowTest(wf)
    first, second = wt.start(), wt.start()
    wt.send_event("go")  # both executions start announce
    first.run("announce")
    first.assert_started("after", times=1, cause="rule 1 of after (START) on event 'done'")
    second.assert_not_started("after")  # the event of another execution's task: not for it
    [done] = [e for e in wt.events if e.key == "done"]
    assert (done.execution_id, done.task, done.try_number, done.value) == ("e1", "announce", 1, "42")


def test_status_changes_reach_triggers_of_other_workflows() -> None:
    with Workflow(name="upstream") as up:
        Operator("build")
    with Workflow(name="downstream") as down:
        Operator("deploy")
    wt = WorkflowTest([up, down])
    wt.add_trigger(TaskStatusCondition("build", TaskStatus.SUCCESS, "upstream", "default"), "downstream")
    wt.start("upstream").fail("build")
    assert wt.executions("downstream") == []
    wt.start("upstream").succeed("build")
    [started] = wt.executions("downstream")
    assert started.run_type == "EVENT" and "[task_status_change].default.upstream.build" in started.cause


def test_a_trigger_with_a_key_of_another_namespace_hears_only_that_namespace() -> None:
    with Workflow(name="w") as wf:
        Operator("t")
    wt = WorkflowTest(wf)
    wt.add_trigger(SingleEventCondition("k", namespace="ops"))
    wt.send_event("k")
    assert wt.executions() == []
    wt.send_event("k", namespace="ops")
    assert len(wt.executions()) == 1


def test_the_clock_starts_at_a_round_time_or_the_one_given() -> None:
    from datetime import datetime, timezone

    assert WorkflowTest(chain()).clock == datetime(2024, 1, 1, tzinfo=timezone.utc)
    wt = WorkflowTest(chain(), start=datetime(2025, 6, 1, 2, 59, 59, tzinfo=timezone.utc))
    wt.add_schedule("cron@0 3 * * *")
    wt.advance(0.5)
    assert wt.executions() == []
    wt.advance(0.5)
    assert [e.cause for e in wt.executions()] == ["schedule 1 (cron@0 3 * * *)"]


def test_driving_a_workflow_test_loads_no_kafka_client_and_the_plugin_loads_nothing_of_aiflow() -> None:
    code = (
        "import sys\n"
        "sys.modules['confluent_kafka'] = None  # any import of it fails\n"
        "import aiflow.testing.pytest_plugin\n"
        "assert 'aiflow.testing._harness' not in sys.modules and 'aiflow.scheduler' not in sys.modules\n"
        "from aiflow.testing import WorkflowTest\n"
        "from aiflow import Workflow, Operator\n"
        "with Workflow(name='w') as wf:\n"
        "    Operator('t')\n"
        "wt = WorkflowTest(wf)\n"
        "wt.start().succeed('t')\n"
        "wt.send_event('k')\n"
        "assert not any(m.startswith('confluent_kafka') and sys.modules[m] for m in sys.modules)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
