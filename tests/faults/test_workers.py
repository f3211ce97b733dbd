"""Workers as separate processes: sharing a stream of tries, and one of them SIGKILLed mid-task."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from aiflow import ops
from tests.conftest import FULL_SCALE, fault_setup, process_alive, start_aiflow, stop_processes

TASKS, EXECUTIONS = (25, 20) if FULL_SCALE else (25, 8)  # 500 tries at full scale, 200 otherwise








def test_two_workers_share_a_stream_and_every_try_runs_exactly_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, config = fault_setup(tmp_path, kafka_bootstrap, "many", "from aiflow import Workflow, BashOperator\n"
                              "with Workflow(name='many'):\n"
                              f"    for i in range({TASKS}):\n"
                              "        BashOperator(name=f't{i}', bash_command=f'echo $AIFLOW_EXECUTION_ID t{i} "
                              f"$AIFLOW_TRY_NUMBER >> {tmp_path}/ran.txt')\n")
    processes = [start_aiflow(["scheduler", "start"], env, tmp_path / "scheduler.log"),
                 start_aiflow(["worker", "start", "--slots", "3"], env, tmp_path / "worker-a.log"),
                 start_aiflow(["worker", "start", "--slots", "3"], env, tmp_path / "worker-b.log")]
    try:
        executions = [ops.start_workflow_execution("many", config=config, wait=60) for _ in range(EXECUTIONS)]
        deadline = time.monotonic() + 600
        while not all(ops.get_workflow_execution(e, config=config).status == "SUCCESS"  # type: ignore[union-attr]
                      for e in executions):
            assert time.monotonic() < deadline, "the stream did not finish"
            time.sleep(1)
        ran = Counter((tmp_path / "ran.txt").read_text().splitlines())
        expected = Counter({f"{e} t{i} 1": 1 for e in executions for i in range(TASKS)})
        assert ran == expected, f"{ran - expected} extra, {expected - ran} missing"
        workers = {t.worker for e in executions for t in ops.list_task_executions(e, config=config)}
        assert len(workers) == 2  # both workers took a share
    finally:
        stop_processes(processes)


LONG = """
from aiflow import Workflow, BashOperator

with Workflow(name="long"):
    BashOperator(name="long", bash_command="echo $$ >> ../pids.txt; sleep 1000", max_retries=1)
"""


def test_a_sigkilled_workers_try_fails_by_heartbeat_and_another_worker_retries_it(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    env, config = fault_setup(tmp_path, kafka_bootstrap, "long", LONG, AIFLOW_HEARTBEAT_TIMEOUT="5",
                              AIFLOW_WORKER_HEARTBEAT_INTERVAL="1", AIFLOW_WORKER_STOP_GRACE="2")
    scheduler = start_aiflow(["scheduler", "start"], env, tmp_path / "scheduler.log")
    first = start_aiflow(["worker", "start", "--slots", "1"], env, tmp_path / "worker-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        execution_id = ops.start_workflow_execution("long", config=config, wait=60)
        deadline = time.monotonic() + 60
        while ops.get_task_execution(execution_id, "long", config=config).status != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        second = start_aiflow(["worker", "start", "--slots", "1"], env, tmp_path / "worker-2.log")
        time.sleep(4)  # let the second worker join the group before the first dies
        first.send_signal(signal.SIGKILL)
        first.wait()
        deadline = time.monotonic() + 60
        while [t.status for t in ops.list_task_executions(execution_id, config=config)] != ["FAILED", "RUNNING"]:
            assert time.monotonic() < deadline, ops.list_task_executions(execution_id, config=config)
            time.sleep(0.2)
        failed, retry = ops.list_task_executions(execution_id, config=config)
        assert "no heartbeat for 5 s" in failed.message
        assert retry.cause == "retry 1 of 1 after try 1 failed" and retry.worker != failed.worker
        # The first try's process noticed its worker was gone and stopped, children included.
        first_bash = int((tmp_path / "home" / "working_dir" / "long" / execution_id / "pids.txt")
                         .read_text().split()[0])
        deadline = time.monotonic() + 20
        while process_alive(first_bash):
            assert time.monotonic() < deadline, "the SIGKILLed worker's try is still running"
            time.sleep(0.2)
        ops.stop_workflow_execution(execution_id, config=config)
        deadline = time.monotonic() + 30
        while ops.get_task_execution(execution_id, "long", config=config).status != "STOPPED":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stop_processes([p for p in (scheduler, first, second) if p is not None])


TWO_LONG = """
from aiflow import Workflow, BashOperator

with Workflow(name="two_long"):
    BashOperator(name="first", bash_command="sleep 1000", max_retries=1)
    BashOperator(name="second", bash_command="sleep 1000", max_retries=1)
"""


def test_a_full_worker_leaves_commands_in_kafka_and_a_stopped_worker_hands_its_tries_back(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    env, config = fault_setup(tmp_path, kafka_bootstrap, "two_long", TWO_LONG, AIFLOW_WORKER_STOP_GRACE="2")
    scheduler = start_aiflow(["scheduler", "start"], env, tmp_path / "scheduler.log")
    busy = start_aiflow(["worker", "start", "--slots", "1"], env, tmp_path / "worker-1.log")
    spare: subprocess.Popen[bytes] | None = None

    def statuses() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for t in ops.list_task_executions(execution_id, config=config):
            found.setdefault(t.task, []).append(t.status)
        return found

    try:
        execution_id = ops.start_workflow_execution("two_long", config=config, wait=60)
        deadline = time.monotonic() + 60
        while sorted(s[-1] for s in statuses().values()) != ["QUEUED", "RUNNING"]:
            assert time.monotonic() < deadline, statuses()
            time.sleep(0.2)
        # Full for longer than leave_when_full_after (5 s): the busy worker has left the group before
        # the spare one starts, and goes on heartbeating from outside it.
        time.sleep(8)
        assert sorted(s[-1] for s in statuses().values()) == ["QUEUED", "RUNNING"]  # one slot: one try
        spare = start_aiflow(["worker", "start", "--slots", "1"], env, tmp_path / "worker-2.log")
        deadline = time.monotonic() + 60
        while [s[-1] for s in statuses().values()] != ["RUNNING", "RUNNING"]:
            assert time.monotonic() < deadline, statuses()
            time.sleep(0.2)
        running = {t.task: t.worker for t in ops.list_task_executions(execution_id, config=config)}
        assert len(set(running.values())) == 2  # the queued command waited in Kafka for the spare worker

        time.sleep(8)  # past the group's session timeout: the busy worker's heartbeats still commit
        assert [s[-1] for s in statuses().values()] == ["RUNNING", "RUNNING"]
        busy.send_signal(signal.SIGTERM)  # a graceful shutdown: its try is handed back as FAILED
        assert busy.wait(timeout=60) == 0
        deadline = time.monotonic() + 60
        while not any(s[:1] == ["FAILED"] for s in statuses().values()):
            assert time.monotonic() < deadline, statuses()
            time.sleep(0.2)
        [handed_back] = [t for t in ops.list_task_executions(execution_id, config=config) if t.status == "FAILED"]
        assert "shut down while it ran" in handed_back.message

        spare.send_signal(signal.SIGTERM)  # it left the group too (full), and hands its try back as well
        assert spare.wait(timeout=60) == 0
        deadline = time.monotonic() + 60
        while statuses()["second"][:1] != ["FAILED"]:
            assert time.monotonic() < deadline, statuses()
            time.sleep(0.2)
        second = ops.get_task_execution(execution_id, "second", try_number=1, config=config)
        assert "shut down while it ran" in second.message
        ops.stop_workflow_execution(execution_id, config=config)
    finally:
        stop_processes([p for p in (scheduler, busy, spare) if p is not None])
