"""The periodic sample: schedules start `nightly`; in `refresh`, `poll` restarts every 3 s and
`report` follows each successful poll."""

from pathlib import Path

from aiflow.testing import WorkflowTest

FLOW = Path(__file__).with_name("periodic_workflows.py")


def test_report_follows_each_successful_poll_every_3_seconds() -> None:
    wt = WorkflowTest(FLOW)
    refresh = wt.start("refresh")
    refresh.run_tasks()
    assert refresh.started() == ["poll", "report"]
    for _ in range(3):
        wt.advance(3)
        assert refresh.queued() == ["poll"]
        assert refresh.cause_of("poll") == "periodic interval@0 0 0 3"
        refresh.run_tasks()
    assert refresh.started() == ["poll", "report"] * 4
    assert refresh.status == "RUNNING"  # a periodic task never lets its execution end


def test_a_failed_poll_is_tried_again_at_the_next_tick_and_report_waits() -> None:
    wt = WorkflowTest(FLOW)
    refresh = wt.start("refresh")
    refresh.fail("poll", "exit code 2")
    assert refresh.status == "RUNNING"
    refresh.assert_not_started("report")
    wt.advance(3)
    refresh.succeed("poll")
    refresh.assert_started("report", times=1)


def test_a_poll_still_running_at_the_next_tick_is_restarted() -> None:
    wt = WorkflowTest(FLOW)
    refresh = wt.start("refresh")
    refresh.running("poll")
    wt.advance(3)
    assert [(t.status, t.stop_reason) for t in refresh.tries("poll")] == [("STOPPED", "restart"), ("QUEUED", "")]


def test_schedules_start_nightly_executions() -> None:
    wt = WorkflowTest(FLOW)  # the clock starts at 2024-01-01 00:00 UTC
    wt.add_schedule("interval@0 0 0 5", "nightly")
    wt.add_schedule("cron@0 3 * * *", "nightly")
    wt.advance(12)
    assert [(e.run_type, e.cause) for e in wt.executions("nightly")] == \
        [("PERIODIC", "schedule 1 (interval@0 0 0 5)")] * 2
    wt.run_tasks()
    assert [e.status for e in wt.executions("nightly")] == ["SUCCESS", "SUCCESS"]
    wt.advance(3 * 3600 - 12)  # to 03:00, with an interval tick every 5 s on the way
    assert wt.clock.hour == 3 and wt.execution.cause == "schedule 2 (cron@0 3 * * *)"
    assert len(wt.executions("nightly")) == 2 + 3 * 3600 // 5 - 2 + 1
