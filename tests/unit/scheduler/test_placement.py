"""Worker placement in the pure core (no broker): a START goes to its task's queue, a QUEUED try whose
queue has no live worker says so and counts no queue timeout, and the mark goes once a worker of that
queue is heard."""

from __future__ import annotations

from pathlib import Path

from aiflow import Operator, Workflow
from aiflow.scheduler import core
from aiflow.scheduler.sandbox import SnapshotHost
from aiflow.sdk.status import ExecutionType

SNAP = core.Snapshot(1, "file:///s.zip", "ab" * 32, "flow.py")
T0 = 1_000_000.0
SETTINGS = core.Settings(queue_timeout=600.0)
WAITING = "waiting: no live worker for queue 'gpu'"


def placed() -> Workflow:
    with Workflow(name="placed") as wf:
        Operator("prepare")
        Operator("train", queue="gpu", max_retries=1)
    return wf


def start() -> tuple[core.Execution, list[core.Output], Workflow]:
    wf = placed()
    ex, out = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", T0)
    return ex, out, wf


def message(ex: core.Execution, task: str) -> str:
    latest = ex.latest(task)
    assert latest is not None
    return latest.message


def test_a_start_is_routed_to_the_queue_of_its_task() -> None:
    _, out, _ = start()
    assert {(o.task, o.queue) for o in out if isinstance(o, core.StartTry)} == {("prepare", "default"),
                                                                               ("train", "gpu")}


def test_a_try_whose_queue_has_no_live_worker_says_so_until_one_is_heard() -> None:
    ex, _, wf = start()
    only_default = core.Queues({"default": T0})
    # Due at once: the mark is out of date as soon as the try is queued.
    assert core.next_deadline(ex, wf, SETTINGS, T0, T0, only_default) == T0
    out = core.on_tick(ex, wf, T0 + 1, SETTINGS, T0, T0, queues=only_default)
    assert out == []  # no status change: the try stays QUEUED, only its message says why
    assert message(ex, "train") == WAITING and message(ex, "prepare") == ""

    # It waits without a queue timeout, however long no gpu worker is heard.
    assert core.next_deadline(ex, wf, SETTINGS, T0, T0, only_default) == T0 + 600  # prepare's queue timeout
    core.on_report(ex, wf, "prepare", 1, "RUNNING", "", "w1", T0 + 2)
    core.on_report(ex, wf, "prepare", 1, "SUCCESS", "", "w1", T0 + 3)
    assert core.next_deadline(ex, wf, SETTINGS, T0, T0, only_default) is None  # nothing to time out
    later = T0 + 10_000
    assert core.on_tick(ex, wf, later, SETTINGS, T0, T0, queues=only_default) == []
    train = ex.latest("train")
    assert train is not None and train.status == "QUEUED" and train.message == WAITING and ex.status == "RUNNING"

    # A gpu worker's beacon: the mark is due to go, and goes; the queue timeout counts from its room.
    with_gpu = core.Queues({"default": T0, "gpu": later})
    assert core.next_deadline(ex, wf, SETTINGS, T0, T0, with_gpu) == T0  # at once
    assert core.on_tick(ex, wf, later + 1, SETTINGS, T0, T0, queues=with_gpu) == []
    assert train.message == "" and train.status == "QUEUED"
    assert core.next_deadline(ex, wf, SETTINGS, T0, T0, with_gpu) == later + 600


def test_no_mark_while_it_is_not_known_that_the_queue_has_no_worker() -> None:
    ex, _, wf = start()
    # Workers heard only just now (a scheduler that just took its partitions, or Kafka back): the gpu
    # worker's beacon may be on its way.
    unsure = core.Queues({"default": T0}, known=False)
    assert core.next_deadline(ex, wf, SETTINGS, T0, T0, unsure) == T0 + 600  # prepare's queue timeout alone
    core.on_tick(ex, wf, T0 + 1, SETTINGS, T0, T0, queues=unsure)
    assert message(ex, "train") == ""
    # Without per-queue liveness (the testing harness, an older caller) nothing is marked either.
    core.on_tick(ex, wf, T0 + 2, SETTINGS, T0, T0)
    assert message(ex, "train") == ""


def test_a_queue_whose_workers_are_all_full_counts_no_queue_timeout_and_is_not_marked() -> None:
    ex, _, wf = start()
    gpu_full = core.Queues({"default": T0, "gpu": None})  # gpu workers heard, none with a free slot
    assert core.next_deadline(ex, wf, SETTINGS, T0, T0, gpu_full) == T0 + 600  # prepare's alone
    core.on_tick(ex, wf, T0 + 599, SETTINGS, T0, T0, queues=gpu_full)
    train = ex.latest("train")
    assert train is not None and train.status == "QUEUED" and train.message == ""
    # The default queue has had room all along: its try does time out.
    core.on_tick(ex, wf, T0 + 601, SETTINGS, T0, T0, queues=gpu_full)
    prepare = ex.latest("prepare")
    assert prepare is not None and prepare.status == "FAILED" and "scheduler.queue_timeout" in prepare.message
    assert train.stop_reason == "stop"  # stopped with its failed execution, not by a queue timeout


def test_the_mark_goes_when_a_worker_takes_the_try() -> None:
    ex, _, wf = start()
    core.on_tick(ex, wf, T0 + 1, SETTINGS, T0, T0, queues=core.Queues({"default": T0}))
    assert message(ex, "train") == WAITING
    core.on_report(ex, wf, "train", 1, "RUNNING", "", "gpu-worker", T0 + 2)
    train = ex.latest("train")
    assert train is not None and train.status == "RUNNING" and train.message == "" and train.worker == "gpu-worker"


def test_a_retry_goes_to_the_same_queue_and_is_marked_at_once() -> None:
    ex, _, wf = start()
    gpu = core.Queues({"default": T0, "gpu": T0})
    core.on_report(ex, wf, "train", 1, "RUNNING", "", "gpu-worker", T0 + 1)
    core.on_report(ex, wf, "train", 1, "FAILED", "boom", "gpu-worker", T0 + 2)  # retried at once (no delay)
    # ...by which time the gpu worker is gone.
    retry = ex.latest("train")
    assert retry is not None and retry.try_number == 2 and retry.status == "QUEUED"
    core.on_tick(ex, wf, T0 + 3, SETTINGS, T0, T0, queues=core.Queues({"default": T0}))
    assert retry.message == WAITING
    core.on_tick(ex, wf, T0 + 4, SETTINGS, T0, T0, queues=gpu)
    assert retry.message == ""


def test_the_scheduler_rebuilds_a_tasks_queue_from_the_snapshots_process(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("from aiflow import Workflow, BashOperator\n"
                    "with Workflow(name='placed'):\n"
                    "    BashOperator('prepare', bash_command='true')\n"
                    "    BashOperator('train', bash_command='true', queue='gpu')\n")
    host = SnapshotHost.for_workflow(flow, "default", "placed", load_timeout=30, memory_mb=0, condition_timeout=5)
    try:
        wf = host.workflow_object(host.load())
    finally:
        host.close()
    assert {name: op.queue for name, op in wf.tasks.items()} == {"prepare": "default", "train": "gpu"}
