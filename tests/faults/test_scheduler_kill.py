"""SIGKILL the scheduler in the middle of a stream of events: every expected try runs exactly once.

Each task appends one line per try to a file of its own execution, so the count is taken from the
tasks' side effects, not from aiflow's own records.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path

from aiflow import EventClient, ops
from tests.conftest import FULL_SCALE, fault_setup, start_aiflow, stop_processes, wait_until

TASKS = 10
EXECUTIONS = 20 if FULL_SCALE else 4
ROUNDS = 5 if FULL_SCALE else 3  # full scale: 20 x 10 x 5 = 1,000 tries

WORKFLOW = f"""
from aiflow import Workflow, BashOperator, TaskAction

with Workflow(name="counted"):
    BashOperator(name="keepalive", bash_command="sleep 100000")
    for i in range({TASKS}):
        task = BashOperator(name=f"t{{i}}", bash_command=f"echo t{{i}} $AIFLOW_TRY_NUMBER >> ../ran.txt")
        task.action_on_event_received(TaskAction.START, f"k{{i}}")
"""




def test_scheduler_sigkill_loses_and_doubles_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, config = fault_setup(tmp_path, kafka_bootstrap, "counted", WORKFLOW, AIFLOW_WORKER_STOP_GRACE="2")
    logs = tmp_path / "logs"
    logs.mkdir()
    # Every execution holds a never-ending `keepalive` (so it runs on between rounds): room for them and the tries.
    worker = start_aiflow(["worker", "start", "--slots", str(EXECUTIONS + 8)], env, logs / "worker.log")
    scheduler = start_aiflow(["scheduler", "start"], env, logs / "scheduler-0.log")
    try:
        executions = [ops.start_workflow_execution("counted", config=config, wait=60) for _ in range(EXECUTIONS)]
        rng = random.Random(7)
        kills = 0
        with EventClient(config) as client:
            for round_number in range(ROUNDS):
                order = list(range(TASKS))
                rng.shuffle(order)
                kill_after = rng.randrange(1, TASKS - 1)
                for n, i in enumerate(order):
                    client.send_event(f"k{i}", f"round {round_number}")
                    if n == kill_after and kills < 3:
                        # Kill a scheduler that is at work: it owns the partitions and has restored them.
                        _wait_for_text(logs / f"scheduler-{kills}.log", "restored")
                        scheduler.send_signal(signal.SIGKILL)
                        scheduler.wait()
                        kills += 1
                        scheduler = start_aiflow(["scheduler", "start"], env, logs / f"scheduler-{kills}.log")
                # Let every try of this round end, so the next round's START is not a no-op on a live try.
                deadline = time.monotonic() + 600
                while _lines(tmp_path, executions) < EXECUTIONS * TASKS * (round_number + 1):
                    assert time.monotonic() < deadline, f"round {round_number}: {_lines(tmp_path, executions)} tries"
                    time.sleep(0.5)
                # ... and their ends reach the scheduler: the store, which follows it, shows them all ended.
                wait_until(lambda: all(t.end_date is not None for e in executions
                                       for t in ops.list_task_executions(e, config=config) if t.task != "keepalive"),
                           120, f"round {round_number}: the tries' ends in the store")
        assert kills == 3
        time.sleep(3)
        for execution_id in executions:
            ran = Counter(_read(tmp_path, execution_id))
            expected = Counter({f"t{i} {r + 1}": 1 for i in range(TASKS) for r in range(ROUNDS)})
            assert ran == expected, f"execution {execution_id}: {ran - expected} extra, {expected - ran} missing"
    finally:
        stop_processes([scheduler, worker])


def _wait_for_text(path: Path, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{path.name} never said {text!r}"
        time.sleep(0.2)


def _read(tmp_path: Path, execution_id: str) -> list[str]:
    path = tmp_path / "home" / "working_dir" / "counted" / execution_id / "ran.txt"
    return path.read_text().splitlines() if path.exists() else []


def _lines(tmp_path: Path, executions: list[str]) -> int:
    return sum(len(_read(tmp_path, e)) for e in executions)
