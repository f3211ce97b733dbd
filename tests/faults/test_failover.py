"""Two schedulers share the work; SIGKILL the one that owns a workflow and the other takes it over."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from aiflow import EventClient, ops
from aiflow.kafka import topics
from aiflow.protocol.records import inbox_partition
from tests.conftest import fault_setup, start_aiflow

WORKFLOW = """
from aiflow import Workflow, BashOperator, TaskAction

with Workflow(name="moved"):
    BashOperator(name="keepalive", bash_command="sleep 100000")
    BashOperator(name="react", bash_command="true").action_on_event_received(TaskAction.START, "poke")
"""




def owned(log: Path) -> set[int]:
    found = re.findall(r"scheduler: assigned partitions \[([0-9, ]*)\]", log.read_text())
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else set()


def test_the_surviving_scheduler_takes_over_a_killed_ones_workflows(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, config = fault_setup(tmp_path, kafka_bootstrap, "moved", WORKFLOW, AIFLOW_WORKER_STOP_GRACE="2")
    partition = inbox_partition("default/moved", topics.partition_count(config, topics.INBOX))
    logs = [tmp_path / "scheduler-a.log", tmp_path / "scheduler-b.log"]
    processes = [start_aiflow(["scheduler", "start"], env, log) for log in logs]
    worker = start_aiflow(["worker", "start"], env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while not (owned(logs[0]) and owned(logs[1]) and owned(logs[0]) | owned(logs[1]) == {0, 1, 2}):
            assert time.monotonic() < deadline, "the two schedulers never shared the partitions"
            time.sleep(0.2)
        execution_id = ops.start_workflow_execution("moved", config=config, wait=30)
        victim = 0 if partition in owned(logs[0]) else 1
        survivor = 1 - victim

        processes[victim].send_signal(signal.SIGKILL)
        processes[victim].wait()
        killed_at = time.time()
        with EventClient(config) as client:
            client.send_event("poke")
        deadline = time.monotonic() + 60
        while not [t for t in ops.list_task_executions(execution_id, config=config) if t.task == "react"]:
            assert time.monotonic() < deadline, "no decision for the moved workflow"
            time.sleep(0.1)
        [react] = [t for t in ops.list_task_executions(execution_id, config=config) if t.task == "react"]
        assert react.begin_date is not None
        print(f"\nfailover: next decision {react.begin_date.timestamp() - killed_at:.1f} s after the SIGKILL")
        assert partition in owned(logs[survivor])
        assert react.cause.startswith("rule 1 of react (START) on event 'poke'")
        ops.stop_workflow_execution(execution_id, config=config)
    finally:
        for process in (*processes, worker):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (*processes, worker):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
