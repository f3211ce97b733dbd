"""Junk everywhere: while a workflow handles 200 events, junk of every kind lands on each of the seven
topics, then every service restarts. Every event starts its task exactly once, every junk record is
in the dead-letter topic exactly once with its reason, and no service stops.

Each task appends one line per try to a file of its execution, so the count comes from the tasks'
side effects, not from aiflow's own records.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

from aiflow import EventClient, ops
from aiflow.config import Config
from aiflow.kafka import topics
from aiflow.kafka.readers import read_dead_letters
from tests.conftest import fault_setup, produce_raw, start_aiflow, stop_processes, wait_until
from tests.unit.protocol.junk import KINDS, TOPICS, junk

TASKS, ROUNDS = 10, 20  # 200 events
JUNK_AT, RESTART_AFTER = 3, 9  # rounds

WORKFLOW = f"""
from aiflow import Workflow, BashOperator, TaskAction

with Workflow(name="junked"):
    # Restarting the worker fails the try it runs; the retry keeps the execution going.
    BashOperator(name="keepalive", bash_command="sleep 100000", max_retries=5)
    for i in range({TASKS}):
        task = BashOperator(name=f"t{{i}}", bash_command=f"echo t{{i}} $AIFLOW_TRY_NUMBER >> ../ran.txt")
        task.action_on_event_received(TaskAction.START, f"k{{i}}")
"""


def test_junk_on_every_topic_then_a_restart_loses_and_doubles_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, config = fault_setup(tmp_path, kafka_bootstrap, "junked", WORKFLOW, AIFLOW_WORKER_STOP_GRACE="2")
    logs = tmp_path / "logs"
    logs.mkdir()
    services = start_services(env, logs, 0)
    landed: list[str] = []
    direct: list[tuple[bytes | None, bytes]] = []
    try:
        execution_id = ops.start_workflow_execution("junked", config=config, wait=60)
        ran = tmp_path / "home" / "working_dir" / "junked" / execution_id / "ran.txt"
        with EventClient(config) as client:
            for round_number in range(ROUNDS):
                for i in range(TASKS):
                    client.send_event(f"k{i}", f"round {round_number}")
                    if round_number == JUNK_AT and i == TASKS // 2:
                        landed = produce_raw(config, [(role, *junk(role, kind)) for role in TOPICS for kind in KINDS])
                        direct = [junk(role, kind) for role, kind in zip(TOPICS, KINDS, strict=True)]
                        produce_raw(config, [(topics.DLQ, key, value) for key, value in direct])
                # Let this round's tries end (reported, not only run), so the next round's START is not a
                # no-op on a live try.
                wait_until(lambda n=round_number: lines(ran) >= TASKS * (n + 1) and round_done(config, execution_id, n),
                           300, f"round {round_number}: {lines(ran)} tries")
                if round_number == RESTART_AFTER:
                    assert_running(services)
                    stop_processes(services)
                    services = start_services(env, logs, 1)
        time.sleep(3)
        expected = Counter({f"t{i} {r + 1}": 1 for i in range(TASKS) for r in range(ROUNDS)})
        got = Counter(ran.read_text().splitlines())
        assert got == expected, f"{got - expected} extra, {expected - got} missing"

        letters = read_dead_letters(config)
        assert Counter(d.source for d in letters if d.source) == Counter(landed), "dead letters of the junk"
        assert all(d.reason for d in letters if d.source)
        assert sorted((d.key, d.value) for d in letters if not d.source) == sorted(direct)
        assert_running(services)
        assert ops.get_workflow_execution(execution_id, config=config).status == "RUNNING"  # type: ignore[union-attr]
    finally:
        stop_processes(services)
    for log in logs.iterdir():
        assert " stopped: " not in log.read_text(), f"{log.name}: a service failed"


def start_services(env: dict[str, str], logs: Path, generation: int) -> list[subprocess.Popen[bytes]]:
    return [start_aiflow(["scheduler", "start"], env, logs / f"scheduler-{generation}.log"),
            start_aiflow(["worker", "start", "--slots", "4"], env, logs / f"worker-{generation}.log")]


def assert_running(services: list[subprocess.Popen[bytes]]) -> None:
    assert [p.poll() for p in services] == [None] * len(services), "a service stopped"


def round_done(config: Config, execution_id: str, round_number: int) -> bool:
    """Every task's latest try is this round's, and it has ended."""
    latest: dict[str, tuple[int, str]] = {}
    for t in ops.list_task_executions(execution_id, config=config):
        if t.task != "keepalive" and t.try_number >= latest.get(t.task, (0, ""))[0]:
            latest[t.task] = (t.try_number, t.status)
    return len(latest) == TASKS and all(v == (round_number + 1, "SUCCESS") for v in latest.values())


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


