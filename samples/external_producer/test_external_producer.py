"""The external producer sample: each `file_landed` record starts `load`; `watch` keeps the execution running."""

from pathlib import Path

from aiflow.testing import WorkflowTest

FLOW = Path(__file__).with_name("external_producer_workflow.py")


def test_load_runs_on_each_file_landed_while_watch_keeps_the_execution_running() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    assert ex.queued() == ["watch"]
    ex.running("watch")
    wt.send_event("file_landed", "/data/2026-11-25.csv")  # what a plain Kafka record becomes
    ex.assert_started("load", times=1, cause="rule 1 of load (START) on event 'file_landed'")
    ex.run_tasks("load")  # `echo loading a landed file`
    assert ex.task_status("load") == "SUCCESS" and ex.status == "RUNNING"
    wt.send_event("file_landed", "/data/2026-11-26.csv")
    ex.assert_started("load", times=2)


def test_a_file_landing_while_load_runs_starts_no_second_try() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    wt.send_event("file_landed")
    ex.running("load")
    wt.send_event("file_landed")
    ex.assert_started("load", times=1)


def test_a_failed_load_leaves_the_execution_running_for_the_next_file() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    wt.send_event("file_landed")
    ex.fail("load", "disk full")
    assert ex.status == "RUNNING"  # its rule can start it again
    wt.send_event("file_landed")
    assert ex.task_status("load") == "QUEUED" and [t.status for t in ex.tries("load")] == ["FAILED", "QUEUED"]
