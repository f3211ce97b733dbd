"""The scheduler's state stays bounded: an execution's record however many tries it runs, heartbeats
that write nothing, and the set of finished ids. Pure: the core, and the service's methods with the
state topic replaced by a dict (no broker is reached)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiflow import Operator, TaskAction, Workflow
from aiflow.protocol.messages import Event, InboxMessage, StateRecord, TaskStatusReport
from aiflow.scheduler import core, service
from aiflow.scheduler.core import Execution, Settings
from aiflow.scheduler.service import Scheduler, _Owned, _RecentIds
from aiflow.sdk.status import ExecutionType
from tests.conftest import make_config

SNAP = core.Snapshot(1, "file:///s.zip", "ab" * 32, "flow/flow.py")
T0 = 1_000_000.0


def restarted() -> Workflow:
    """`work` starts on every `go` event (and, failing, is retried once); `keepalive` never ends."""
    with Workflow(name="restarted") as wf:
        Operator("keepalive")
        work = Operator("work", max_retries=1)
        work.action_on_event_received(TaskAction.START, "go")
    return wf


def test_an_execution_of_10000_tries_keeps_its_state_record_under_64_kb() -> None:
    wf = restarted()
    ex, _ = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
    now = T0
    for i in range(10_000):
        now += 1
        if i % 2 == 0:
            core.on_event(ex, wf, Event(key="go"), "aiflow.events/0/1", now)
        latest = ex.latest("work")
        assert latest is not None
        status = "SUCCESS" if i % 3 else "FAILED"  # a failure is retried: one more try of its own
        core.on_report(ex, wf, "work", latest.try_number, "RUNNING", "", "w1", now)
        core.on_report(ex, wf, "work", latest.try_number, status, "boom " * 20, "w1", now)
        core.trim_history(ex)  # what the service does before each write
    latest = ex.latest("work")
    assert latest is not None and latest.try_number > 5_000
    tries = sum(len(t) for t in ex.tries.values())
    assert tries == len(wf.tasks) + core.TRIES_KEPT
    body = json.dumps(ex.to_dict())
    record = StateRecord("EXECUTION", ex.id, ex.namespace, ex.workflow, 1, body).to_record(0)
    assert len(body) < 64 * 1024 and record.size() < 64 * 1024
    # Numbering goes on from the latest try, whatever was trimmed.
    number = latest.try_number
    core.on_event(ex, wf, Event(key="go"), "aiflow.events/0/2", now + 1)
    assert [t.try_number for t in ex.tries["work"]][-1] == number + 1
    # The earlier tries kept are the most recent ones, in order.
    numbers = [t.try_number for t in ex.tries["work"]]
    assert numbers == sorted(numbers) and numbers[-2] == number


def test_trimming_keeps_each_tasks_latest_try_and_the_most_recently_ended_earlier_ones() -> None:
    ex = Execution("e1", "default", "wf", SNAP, "MANUAL", "test")
    ex.tries["old"] = [core.TaskTry("old", n, "SUCCESS", "c", end_time=float(n)) for n in range(1, 4)]
    ex.tries["new"] = [core.TaskTry("new", n, "SUCCESS", "c", end_time=1000.0 + n)
                       for n in range(1, core.TRIES_KEPT + 3)]
    core.trim_history(ex)
    assert [t.try_number for t in ex.tries["old"]] == [3]  # its latest, however old
    assert [t.try_number for t in ex.tries["new"]] == list(range(2, core.TRIES_KEPT + 3))


# -- the service ---------------------------------------------------------------------------------
@pytest.fixture
def scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scheduler]:
    """A Scheduler whose Kafka clients are never used: inputs are applied and state is flushed by hand."""
    config = make_config(tmp_path / "home", "127.0.0.1:9")  # nothing listens there; nothing connects
    s = Scheduler(config, Settings(heartbeat_timeout=30.0))
    wf = restarted()
    monkeypatch.setattr(s, "_workflow_of", lambda ex: wf)
    monkeypatch.setattr(s, "_partition_of", lambda wid: 0)
    yield s
    s.definitions.close()


def running(s: Scheduler) -> Execution:
    ex, _ = core.start_execution(restarted(), "e1", SNAP, ExecutionType.MANUAL, "test", T0)
    s.executions[ex.id] = _Owned(ex, 0)
    s._dirty.clear()
    return ex


def report(s: Scheduler, status: str | None, offset: int, task: str = "keepalive") -> None:
    m = InboxMessage.for_report("default", "restarted", TaskStatusReport("e1", task, 1, status, "", "w1"))
    s._apply(m, 0, offset)


def state_records(s: Scheduler) -> list[str]:
    s._flush_state()
    found = [str(r.key) for r in s._pending if r.role == "state" and r.key == "e1"]
    s._pending.clear()
    return found


def test_heartbeats_write_no_state_record_and_status_changes_do(scheduler: Scheduler) -> None:
    ex = running(scheduler)
    report(scheduler, "RUNNING", 1)
    assert state_records(scheduler) == ["e1"]
    for offset in range(2, 12):
        report(scheduler, None, offset)
    assert state_records(scheduler) == []
    attempt = ex.latest("keepalive")
    assert attempt is not None and attempt.last_heartbeat is not None  # heard, in memory
    # The execution's next deadline moved on with the heartbeat.
    assert scheduler._deadlines["e1"] == pytest.approx(attempt.last_heartbeat + 30.0, abs=1.0)
    report(scheduler, "SUCCESS", 12)
    assert state_records(scheduler) == ["e1"]


def test_a_restore_gives_every_try_a_full_heartbeat_timeout_from_when_workers_are_heard(
        scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    ex = running(scheduler)
    attempt = ex.latest("keepalive")
    assert attempt is not None
    attempt.status, attempt.begin_time, attempt.last_heartbeat = "RUNNING", T0, T0  # a stale heartbeat
    record = StateRecord("EXECUTION", ex.id, ex.namespace, ex.workflow, 3, json.dumps(ex.to_dict()))

    def read_state(config: object, partitions: object, reporter: str, settled: dict[str, int]) -> object:
        settled["s1"] = 0  # a settled execution, left undecoded
        return {("EXECUTION", ex.id): (0, record)}

    monkeypatch.setattr(service, "read_state", read_state)
    scheduler.executions.clear()
    scheduler._heard(T0 + 100)
    scheduler._restore([], fresh=True)
    assert "e1" not in scheduler._deadlines  # nobody heard yet: no silence counts
    assert "s1" in scheduler.finished and "s1" not in scheduler.executions
    scheduler._heard(T0 + 5000)
    assert scheduler._deadlines["e1"] == T0 + 5000 + 30.0
    # After a failed step the liveness goes on, and the heartbeats heard in memory are put back.
    scheduler.executions.clear()
    scheduler._restore([], fresh=False, heartbeats={("e1", "keepalive", 1): T0 + 6000})
    restored = scheduler.executions["e1"].execution.latest("keepalive")
    assert restored is not None and restored.last_heartbeat == T0 + 6000
    assert scheduler._deadlines["e1"] == T0 + 6000 + 30.0


def test_the_finished_ids_are_bounded_and_forget_the_oldest_first() -> None:
    ids = _RecentIds(limit=3)
    for i in range(5):
        ids.add(f"e{i}")
    assert len(ids) == 3 and "e0" not in ids and "e1" not in ids and all(f"e{i}" in ids for i in (2, 3, 4))
    ids.add("e2")  # seen again: now the most recent
    ids.add("e5")
    assert "e2" in ids and "e3" not in ids
    assert service.FINISHED_KEPT >= 10_000


def test_a_settled_execution_leaves_memory_and_its_id_is_remembered(scheduler: Scheduler) -> None:
    running(scheduler)
    scheduler._apply(InboxMessage.for_command("default", "restarted", service.Command.STOP_EXECUTION, "e1"), 0, 1)
    report(scheduler, "STOPPED", 2)
    scheduler._flush_state()
    [record] = [r for r in scheduler._pending if r.role == "state" and r.key == "e1"][-1:]
    assert dict(record.headers) == {service.SETTLED_HEADER: b"1"}
    assert "e1" not in scheduler.executions and "e1" in scheduler.finished
