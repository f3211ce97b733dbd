"""The scheduler core's semantics. Rules, statuses and timers are driven through `aiflow.testing`'s
WorkflowTest, which runs this same core in-process; what only the scheduler sees (its raw outputs, worker
liveness, the changelog) is checked on the core's functions directly. No broker, no database, no clock."""

from __future__ import annotations

import dataclasses
import json

from aiflow import Condition, Operator, TaskAction, TaskStatus, ValueStateDescriptor, Workflow
from aiflow.protocol.messages import Event
from aiflow.scheduler import core
from aiflow.scheduler.core import Execution, Settings, StartTry, StatusChanged, StopTry
from aiflow.sdk.status import ExecutionType
from aiflow.testing import WorkflowTest

SNAP = core.Snapshot(1, "file:///s.zip", "ab" * 32, "flow/flow.py")
T0 = 1_000_000.0


# -- the core on its own: raw outputs and worker liveness ------------------------------------------
def start(wf: Workflow, now: float = T0) -> tuple[Execution, list[core.Output]]:
    return core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", now)


def starts(outputs: list[core.Output]) -> list[tuple[str, int]]:
    return [(o.task, o.try_number) for o in outputs if isinstance(o, StartTry)]


def stops(outputs: list[core.Output]) -> list[tuple[str, int, str, bool]]:
    return [(o.task, o.try_number, o.reason, o.kill) for o in outputs if isinstance(o, StopTry)]


def report(ex: Execution, wf: Workflow, task: str, status: str | None, try_number: int | None = None,
           now: float = T0 + 1, message: str = "") -> list[core.Output]:
    """A worker's report (None: a heartbeat) on the task's latest try, or on try `try_number`."""
    latest = ex.latest(task)
    assert latest is not None
    return core.on_report(ex, wf, task, try_number or latest.try_number, status, message, "w1", now)


def event(key: str, namespace: str = "default") -> Event:
    return Event(key=key, namespace=namespace)


# -- rules and statuses, through the harness -------------------------------------------------------
def chain() -> Workflow:
    with Workflow(name="chain") as wf:
        a, b, c = Operator("a"), Operator("b"), Operator("c")
        b.start_after(a)
        c.start_after([a, b])
    return wf


def test_tasks_without_a_start_rule_start_with_the_execution() -> None:
    ex = WorkflowTest(chain()).start()
    assert ex.queued() == ["a"] and ex.cause_of("a") == "execution started"
    assert ex.status == "RUNNING" and ex.task_status("b") is None


def test_start_after_waits_for_every_upstream_success_in_any_definition_order() -> None:
    ex = WorkflowTest(chain()).start()
    ex.succeed("a")
    assert ex.queued() == ["b"]
    ex.succeed("b")
    assert ex.queued() == ["c"] and ex.cause_of("c") == "rule 1 of c (START) on b try 1 SUCCESS"
    ex.succeed("c")
    assert ex.status == "SUCCESS" and ex.state.end_time is not None


def test_status_changes_are_announced() -> None:
    wf = chain()
    ex, out = start(wf)
    assert [(o.task, o.status) for o in out if isinstance(o, StatusChanged)] == [("a", "QUEUED")]
    report(ex, wf, "a", "RUNNING")
    out = report(ex, wf, "a", "SUCCESS")
    assert ("a", "SUCCESS") in [(o.task, o.status) for o in out if isinstance(o, StatusChanged)]


def events_wf() -> Workflow:
    with Workflow(name="ev") as wf:
        t = Operator("t")
        t.action_on_event_received(TaskAction.START, "go")
        t.action_on_event_received(TaskAction.STOP, "halt")
        t.action_on_event_received(TaskAction.RESTART, "again")
        Operator("forever")
    return wf


def test_start_on_an_alive_task_is_ignored_and_starts_a_new_try_once_it_ended() -> None:
    wt = WorkflowTest(events_wf())
    ex = wt.start()
    wt.send_event("go")
    wt.send_event("go")
    ex.assert_started("t", times=1)
    ex.succeed("t")
    wt.send_event("go")
    ex.assert_started("t", times=2)
    assert ex.cause_of("t") == "rule 1 of t (START) on event 'go'"


def test_stop_stops_the_alive_try_and_is_a_no_op_on_a_task_that_never_ran() -> None:
    wt = WorkflowTest(events_wf(), confirm_stops=False)
    ex = wt.start()
    wt.send_event("halt")  # t never ran: nothing, and no error
    ex.assert_not_started("t")
    wt.send_event("go")
    ex.running("t")
    wt.send_event("halt")
    latest = ex.latest("t")
    assert latest is not None and latest.status == "STOPPING" and latest.stop_reason == "stop"
    ex.stopped("t")
    assert ex.task_status("t") == "STOPPED"
    assert ex.status == "RUNNING"  # t can be started again by its rules


def test_restart_stops_then_starts_a_new_try() -> None:
    wt = WorkflowTest(events_wf(), confirm_stops=False)
    ex = wt.start()
    wt.send_event("again")  # not alive: just start
    ex.assert_started("t", times=1)
    ex.running("t")
    wt.send_event("again")
    assert ex.task_status("t") == "STOPPING" and len(ex.tries("t")) == 1  # the new try waits for the stop
    ex.stopped("t")
    assert [x.status for x in ex.tries("t")] == ["STOPPED", "QUEUED"]
    assert ex.cause_of("t").startswith("rule 3 of t (RESTART)")


def test_the_first_rule_of_a_task_that_fires_wins() -> None:
    with Workflow(name="w") as wf:
        t = Operator("t")
        t.action_on_event_received(TaskAction.START, "k")
        t.action_on_event_received(TaskAction.STOP, "k")
    wt = WorkflowTest(wf)
    ex = wt.start()
    wt.send_event("k")
    ex.running("t")
    wt.send_event("k")  # START fires first, and is a no-op
    assert ex.task_status("t") == "RUNNING"


def test_events_of_another_namespace_fire_nothing() -> None:
    wt = WorkflowTest(events_wf())
    ex = wt.start()
    wt.send_event("go", namespace="other")
    ex.assert_not_started("t")


def test_action_on_task_status_with_failed() -> None:
    with Workflow(name="w") as wf:
        stream, batch = Operator("stream"), Operator("batch")
        stream.action_on_task_status(TaskAction.STOP, {batch: TaskStatus.FAILED})
        batch.action_on_event_received(TaskAction.START, "retry-batch")  # so a failure does not end it
    wt = WorkflowTest(wf)
    ex = wt.start().running("stream")
    wt.send_event("retry-batch")
    ex.fail("batch")
    latest = ex.latest("stream")
    assert latest is not None and (latest.status, latest.stop_reason) == ("STOPPED", "stop")


class SumReaches10(Condition):
    def __init__(self) -> None:
        super().__init__(["n"])

    def is_met(self, event: Event, context) -> bool:  # type: ignore[no-untyped-def]
        state = context.get_state(ValueStateDescriptor("sum"))
        total = (state.value() or 0) + int(event.value or 0)
        state.update(total)
        return total >= 10


def test_custom_condition_state_survives_a_restart_of_the_scheduler() -> None:
    with Workflow(name="w") as wf:
        Operator("t").action_on_condition(TaskAction.START, SumReaches10())
    wt = WorkflowTest(wf)
    ex = wt.start()
    wt.send_event("n", "6")
    restored = Execution.from_dict(json.loads(json.dumps(ex.state.to_dict())))  # through the changelog
    assert restored.states == {"sum": 6}
    assert starts(core.on_event(restored, wf, Event(key="n", value="4"), "", T0)) == [("t", 1)]


def test_an_executions_state_body_is_what_asdict_gives() -> None:
    with Workflow(name="w") as wf:
        t = Operator("t")
        t.action_on_condition(TaskAction.START, SumReaches10())
        Operator("u").start_after(t)
    wt = WorkflowTest(wf)
    ex = wt.start()
    for value in ("6", "4", "7", "3"):
        wt.send_event("n", value)
    body = ex.state.to_dict()
    assert body["tries"] and body["states"] and body == dataclasses.asdict(ex.state)
    assert json.dumps(body) == json.dumps(dataclasses.asdict(ex.state))


def test_a_raising_condition_is_not_met_and_does_not_stop_the_scheduler() -> None:
    class Broken(Condition):
        def is_met(self, event, context) -> bool:  # type: ignore[no-untyped-def]
            raise RuntimeError("bug in user code")

    with Workflow(name="w") as wf:
        Operator("t").action_on_condition(TaskAction.START, Broken(["k"]))
    wt = WorkflowTest(wf)
    ex = wt.start()
    wt.send_event("k")
    ex.assert_not_started("t")
    assert ex.status == "RUNNING"


def test_execution_fails_when_a_task_that_cannot_be_restarted_fails() -> None:
    ex = WorkflowTest(chain()).start()
    ex.fail("a")
    assert ex.status == "FAILED"


def test_execution_keeps_running_when_a_rule_can_restart_the_failed_task() -> None:
    wt = WorkflowTest(events_wf())
    ex = wt.start()
    wt.send_event("go")
    ex.fail("t")
    assert ex.status == "RUNNING"


def test_failed_execution_stops_what_is_still_running() -> None:
    with Workflow(name="w") as wf:
        Operator("stream")
        Operator("batch")
    ex = WorkflowTest(wf, confirm_stops=False).start().running("stream")
    ex.fail("batch")
    assert ex.status == "FAILED" and ex.task_status("stream") == "STOPPING"
    ex.stopped("stream")
    assert ex.task_status("stream") == "STOPPED" and ex.status == "FAILED" and ex.state.settled


def test_stop_execution_stops_every_alive_try_and_then_ignores_events() -> None:
    wt = WorkflowTest(events_wf(), confirm_stops=False)
    ex = wt.start().running("forever")
    ex.stop()
    assert ex.status == "STOPPED" and ex.task_status("forever") == "STOPPING"
    assert not ex.state.settled
    wt.send_event("go")
    ex.assert_not_started("t")
    ex.stopped("forever")
    assert ex.state.settled


def test_commands_on_tasks() -> None:
    wt = WorkflowTest(events_wf(), confirm_stops=False)
    ex = wt.start()
    ex.start_task("t")
    assert ex.cause_of("t") == "command START_TASK"
    assert core.on_command(ex.state, ex.workflow, "START_TASK", "nope", T0) == []  # an unknown task: ignored
    ex.running("t").restart_task("t")
    latest = ex.latest("t")
    assert latest is not None and (latest.status, latest.stop_reason) == ("STOPPING", "restart")


def test_late_and_duplicate_reports_change_nothing() -> None:
    wf = events_wf()
    ex, _ = start(wf)
    report(ex, wf, "forever", "RUNNING")
    report(ex, wf, "forever", "SUCCESS")
    before = json.dumps(ex.to_dict())
    assert report(ex, wf, "forever", "FAILED", try_number=1) == []
    # A worker that says it runs a try no longer in play is told to kill it; nothing else changes.
    assert report(ex, wf, "forever", "RUNNING", try_number=1) == [
        StopTry("e1", "forever", 1, "the try is no longer in play", kill=True)]
    core.on_event(ex, wf, event("go"), "", T0)
    assert core.on_report(ex, wf, "t", 7, "SUCCESS", "", "w", T0) == []  # a try that does not exist
    assert json.loads(before)["tries"]["forever"] == ex.to_dict()["tries"]["forever"]


def test_periodic_tasks_keep_the_execution_running_and_restart_on_their_schedule() -> None:
    with Workflow(name="w") as wf:
        Operator("tick", periodic_expression="interval@0 0 0 10")
    wt = WorkflowTest(wf)
    ex = wt.start()
    assert ex.queued() == ["tick"] and ex.state.next_periodic["tick"] == wt.now + 10
    wt.advance(1)
    ex.succeed("tick")
    assert ex.status == "RUNNING"
    assert core.next_deadline(ex.state, wf, Settings()) == wt.start_time + 10
    wt.advance(4)
    ex.assert_started("tick", times=1)
    wt.advance(5)
    ex.assert_started("tick", times=2, cause="periodic interval@0 0 0 10")
    assert ex.state.next_periodic["tick"] == wt.start_time + 20


def test_a_failed_try_with_retries_left_is_retried_after_the_delay() -> None:
    with Workflow(name="w") as wf:
        Operator("flaky", max_retries=1, retry_delay=30)
    wt = WorkflowTest(wf)
    ex = wt.start()
    wt.advance(1)
    ex.fail("flaky")
    assert ex.queued() == [] and ex.task_status("flaky") == "RETRYING" and ex.status == "RUNNING"
    assert ex.tries("flaky")[0].status == "FAILED"
    wt.advance(20)
    assert ex.task_status("flaky") == "RETRYING"
    wt.advance(10)
    assert ex.queued() == ["flaky"] and ex.cause_of("flaky") == "retry 1 of 1 after try 1 failed"
    wt.advance(9)
    ex.fail("flaky")
    assert ex.task_status("flaky") == "FAILED" and ex.status == "FAILED"  # no retries left


def test_a_try_running_past_its_timeout_is_stopped_and_failed() -> None:
    with Workflow(name="w") as wf:
        Operator("slow", timeout=60)
    wt = WorkflowTest(wf, confirm_stops=False)
    ex = wt.start().running("slow")
    wt.advance(30)
    assert ex.task_status("slow") == "RUNNING"
    wt.advance(31)
    latest = ex.latest("slow")
    assert latest is not None and (latest.status, latest.stop_reason) == ("STOPPING", "timeout")
    ex.stopped("slow")
    assert latest.status == "FAILED" and "timed out after 60.0 s" in latest.message
    assert ex.status == "FAILED"


def test_a_running_try_without_heartbeats_is_failed_and_killed() -> None:
    with Workflow(name="w") as wf:
        Operator("t", max_retries=1)
    ex, _ = start(wf)
    report(ex, wf, "t", "RUNNING", now=T0)
    report(ex, wf, "t", None, now=T0 + 20)  # a heartbeat
    assert core.on_tick(ex, wf, T0 + 45, Settings(heartbeat_timeout=30)) == []
    out = core.on_tick(ex, wf, T0 + 51, Settings(heartbeat_timeout=30))
    assert stops(out) == [("t", 1, "heartbeat", True)]
    assert ex.tries["t"][0].status == "FAILED" and "no heartbeat for 30 s" in ex.tries["t"][0].message
    assert starts(out) == [("t", 2)]  # retried at once: retry_delay is 0


def test_a_queued_try_is_not_timed_out_while_it_waits_for_a_worker_but_fails_after_the_queue_timeout() -> None:
    with Workflow(name="w") as wf:
        Operator("t", timeout=5, max_retries=1)
    ex, _ = start(wf)
    assert core.next_deadline(ex, wf, Settings(queue_timeout=600)) == T0 + 600  # not T0 + 5: the task timeout
    assert core.on_tick(ex, wf, T0 + 599, Settings(queue_timeout=600)) == []
    out = core.on_tick(ex, wf, T0 + 601, Settings(queue_timeout=600))
    assert stops(out) == [("t", 1, "queue", True)] and starts(out) == [("t", 2)]
    first = ex.tries["t"][0]
    assert first.status == "FAILED" and first.message == "no worker took it within 600 s (scheduler.queue_timeout)"


def test_time_in_which_no_worker_is_heard_does_not_count_and_each_try_gets_a_full_timeout_after() -> None:
    with Workflow(name="w") as wf:
        Operator("t")
        Operator("waiting")
    ex, _ = start(wf)
    report(ex, wf, "t", "RUNNING", now=T0)
    settings = Settings(heartbeat_timeout=30, queue_timeout=100)
    # An outage from T0 + 10: nobody is heard, so nothing is failed however long it lasts.
    assert core.next_deadline(ex, wf, settings, heard_since=None, room_since=None) is None
    assert core.on_tick(ex, wf, T0 + 500, settings, heard_since=None, room_since=None) == []
    # Heard again at T0 + 500: the silent try gets a full heartbeat timeout, the queued one a full queue timeout.
    back = {"heard_since": T0 + 500, "room_since": T0 + 500}
    assert core.next_deadline(ex, wf, settings, **back) == T0 + 530
    assert core.on_tick(ex, wf, T0 + 529, settings, **back) == []
    report(ex, wf, "t", None, now=T0 + 520)  # its worker is back and heartbeats
    assert core.on_tick(ex, wf, T0 + 531, settings, **back) == []
    report(ex, wf, "t", None, now=T0 + 590)
    out = core.on_tick(ex, wf, T0 + 601, settings, **back)
    assert ("waiting", 1, "queue", True) in stops(out) and ("t", 1, "heartbeat", True) not in stops(out)
    assert ex.tries["waiting"][-1].status == "FAILED"


def test_a_stop_that_is_not_confirmed_is_sent_again_as_a_kill_then_ends_when_the_worker_is_silent() -> None:
    with Workflow(name="w") as wf:
        Operator("t")
        Operator("u")
    ex, _ = start(wf)
    report(ex, wf, "t", "RUNNING", now=T0)
    report(ex, wf, "u", "RUNNING", now=T0)
    out = core.on_command(ex, wf, "STOP_EXECUTION", None, T0 + 1)
    assert sorted(stops(out)) == [("t", 1, "stop", False), ("u", 1, "stop", False)] and ex.finished
    settings = Settings(heartbeat_timeout=30, stop_timeout=10)
    report(ex, wf, "u", None, now=T0 + 5)
    report(ex, wf, "u", "STOPPED", now=T0 + 6)
    assert core.next_deadline(ex, wf, settings) == T0 + 11
    for now in (T0 + 12, T0 + 23):  # its worker still heartbeats, but has not stopped it: KILL, again
        report(ex, wf, "t", None, now=now - 1)
        assert stops(core.on_tick(ex, wf, now, settings)) == [("t", 1, "stop not confirmed within 10 s", True)]
    assert not ex.settled
    # The worker falls silent: 30 s after its last heartbeat (T0 + 22) the try ends, and the execution settles.
    assert not core.on_tick(ex, wf, T0 + 51, settings) or not ex.settled
    core.on_tick(ex, wf, T0 + 53, settings)
    latest = ex.latest("t")
    assert latest is not None and latest.status == "STOPPED" and "stop was not confirmed" in latest.message
    assert ex.settled and ex.status == "STOPPED"


def test_a_restart_whose_stop_is_not_confirmed_still_starts_the_new_try() -> None:
    with Workflow(name="w") as wf:
        Operator("t").action_on_event_received(TaskAction.RESTART, "again")
    ex, _ = start(wf)
    report(ex, wf, "t", "RUNNING", now=T0)
    assert stops(core.on_event(ex, wf, event("again"), "", T0 + 1)) == [("t", 1, "restart", False)]
    out = core.on_tick(ex, wf, T0 + 40, Settings(heartbeat_timeout=30, stop_timeout=1000))
    assert starts(out) == [("t", 2)] and ex.tries["t"][0].status == "STOPPED"


def test_a_schedule_fires_once_per_due_tick_and_once_after_downtime() -> None:
    from aiflow.sdk.expressions import parse_expression

    ws = core.WorkflowState("default", "w")
    every_10s = [(1, parse_expression("interval@0 0 0 10"))]
    assert core.due_schedules(ws, every_10s, T0) == []  # first sight: the first tick is 10 s away
    assert ws.schedule_next == {"1": T0 + 10}
    assert core.due_schedules(ws, every_10s, T0 + 5) == []
    assert core.due_schedules(ws, every_10s, T0 + 10) == [1]
    assert ws.schedule_next == {"1": T0 + 20}
    restored = core.WorkflowState.from_dict(json.loads(json.dumps(ws.to_dict())))
    assert core.due_schedules(restored, every_10s, T0 + 1000) == [1]  # 98 missed ticks: one run
    assert core.due_schedules(restored, every_10s, T0 + 1001) == []
    assert core.due_schedules(restored, [], T0 + 2000) == [] and restored.schedule_next == {}


def test_triggers_fire_on_their_keys_with_state_of_their_own() -> None:
    from aiflow import MeetAllCondition, SingleEventCondition

    ws = core.WorkflowState("default", "w")
    both = MeetAllCondition("both", [SingleEventCondition("a"), SingleEventCondition("b")])
    triggers = [(1, SingleEventCondition("a")), (2, both)]
    assert core.on_trigger_event(ws, triggers, event("a"), T0) == [1]
    assert core.on_trigger_event(ws, triggers, event("b"), T0) == [2]
    assert core.on_trigger_event(ws, triggers, event("a", namespace="other"), T0) == []
    assert core.on_trigger_event(ws, [(1, SingleEventCondition("a"))], event("a"), T0) == [1]
    assert set(ws.trigger_states) == {"1"}  # the removed trigger's state is dropped


def test_a_condition_shared_by_several_rules_counts_each_event_once() -> None:
    with Workflow(name="w") as wf:
        reached = SumReaches10()
        for name in ("a", "b"):
            Operator(name).action_on_condition(TaskAction.STOP, reached)
    wt = WorkflowTest(wf)
    ex = wt.start().running("a").running("b")
    wt.send_event("n", "6")
    assert ex.state.states == {"sum": 6}  # not 12
    wt.send_event("n", "4")
    assert [(t.status, t.stop_reason) for t in (ex.tries("a") + ex.tries("b"))] == [("STOPPED", "stop")] * 2


def test_input_read_again_after_lost_offsets_is_seen_once() -> None:
    ws = core.WorkflowState("default", "w")
    assert core.first_sight(ws, 10, (2, 500))
    assert not core.first_sight(ws, 10, (2, 500))  # the inbox read again
    assert not core.first_sight(ws, 11, (2, 500))  # the event routed again, into a new inbox record
    assert not core.first_sight(ws, 12, (2, 499))
    assert core.first_sight(ws, 13, (1, 7))  # another events partition has its own sequence
    assert core.first_sight(ws, 14, (2, 501)) and core.first_sight(ws, 15)
    restored = core.WorkflowState.from_dict(json.loads(json.dumps(ws.to_dict())))
    assert not core.first_sight(restored, 15) and not core.first_sight(restored, 16, (2, 501))


def test_a_start_waits_without_limit_while_every_worker_is_full() -> None:
    with Workflow(name="w") as wf:
        Operator("t")
    ex, _ = start(wf)
    settings = Settings(queue_timeout=100)
    # Workers are heard, but none has a free slot: the START is a backlog, not a lost command.
    assert core.next_deadline(ex, wf, settings, heard_since=T0, room_since=None) is None
    assert core.on_tick(ex, wf, T0 + 5000, settings, heard_since=T0, room_since=None) == []
    assert ex.tries["t"][-1].status == "QUEUED"
    # A slot frees up at T0 + 5000 and the command is still not taken 100 s later: it is lost.
    assert stops(core.on_tick(ex, wf, T0 + 5101, settings, heard_since=T0, room_since=T0 + 5000)) == \
        [("t", 1, "queue", True)]


def test_a_report_read_late_keeps_the_time_its_worker_wrote_it_within_what_came_before_and_now() -> None:
    with Workflow(name="w") as wf:
        Operator("a", timeout=60)
    ex, _ = start(wf)  # queued at T0
    # Read 8 s after it was written (a scheduler's failover): the try began when the worker said so.
    core.on_report(ex, wf, "a", 1, "RUNNING", "", "w1", T0 + 10, reported_at=T0 + 2)
    attempt = ex.latest("a")
    assert attempt is not None and attempt.begin_time == T0 + 2
    # Its timeout counts from there too: 60 s after T0 + 2, not after T0 + 10.
    quiet = core.Settings(heartbeat_timeout=600)  # no heartbeats are sent here
    assert stops(core.on_tick(ex, wf, T0 + 61, quiet)) == []
    assert [(t, n, r) for t, n, r, _ in stops(core.on_tick(ex, wf, T0 + 63, quiet))] == [("a", 1, "timeout")]

    ex, _ = start(wf)
    core.on_report(ex, wf, "a", 1, "RUNNING", "", "w1", T0 + 1, reported_at=T0 - 50)  # a worker's clock behind
    core.on_report(ex, wf, "a", 1, "SUCCESS", "", "w1", T0 + 5, reported_at=T0 + 3)
    attempt = ex.latest("a")
    assert attempt is not None and (attempt.begin_time, attempt.end_time) == (T0, T0 + 3)  # not before its START
    ex, _ = start(wf)
    core.on_report(ex, wf, "a", 1, "RUNNING", "", "w1", T0 + 1, reported_at=T0 + 90)  # a worker's clock ahead
    core.on_report(ex, wf, "a", 1, "FAILED", "boom", "w1", T0 + 4)  # no time: when it was read
    attempt = ex.latest("a")
    assert attempt is not None and (attempt.begin_time, attempt.end_time) == (T0 + 1, T0 + 4)  # not after now
