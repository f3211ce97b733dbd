"""A worker SIGKILLed while its try prints: what it shipped stays readable from any machine."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from aiflow import ops
from aiflow.kafka.readers import TryLogReader
from tests.conftest import fault_setup, make_config, start_aiflow, stop_processes, wait_until

PRINTER = """
import time
from aiflow import Workflow, PythonOperator

def printer():
    i = 0
    while True:
        print(f"tick {i}", flush=True)
        i += 1
        time.sleep(0.05)

with Workflow(name="printer"):
    PythonOperator(name="printer", python_callable=printer)
"""


def ticks(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("tick ")]


def test_what_a_sigkilled_worker_shipped_is_readable_and_following_it_ends(kafka_bootstrap: str,
                                                                           tmp_path: Path) -> None:
    env, config = fault_setup(tmp_path, kafka_bootstrap, "printer", PRINTER, AIFLOW_HEARTBEAT_TIMEOUT="5",
                              AIFLOW_WORKER_HEARTBEAT_INTERVAL="1")
    # Another machine: a home without the worker's log files, the same database and topics.
    elsewhere = make_config(tmp_path / "elsewhere", kafka_bootstrap, AIFLOW_TOPIC_PREFIX=config.topic_prefix,
                            AIFLOW_DB_URI=config.values["db.uri"])
    scheduler = start_aiflow(["scheduler", "start"], env, tmp_path / "scheduler.log")
    doomed = start_aiflow(["worker", "start", "--slots", "1"], env, tmp_path / "worker-1.log")
    witness = None
    try:
        execution_id = ops.start_workflow_execution("printer", config=config, wait=60)
        wait_until(lambda: ops.get_task_execution(execution_id, "printer", config=config).status == "RUNNING", 60,
                   "the printer to run")
        # A second worker, so the scheduler hears workers and fails the dead one's try by heartbeat.
        witness = start_aiflow(["worker", "start", "--slots", "1"], env, tmp_path / "worker-2.log")
        reader = TryLogReader(config, execution_id, "printer", 1)
        seen = b""
        deadline = time.monotonic() + 60
        while len(ticks(seen.decode())) < 40:
            assert time.monotonic() < deadline, "the try's output is not shipped"
            seen += reader.read(0.5)
        reader.close()
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()

        shipped = ticks(ops.read_task_log(execution_id, "printer", config=elsewhere).text)
        assert len(shipped) >= 40 and shipped == [f"tick {i}" for i in range(len(shipped))]

        # Following it from elsewhere ends once the try has FAILED (no end chunk ever comes).
        pieces = list(ops.follow_task_log(execution_id, "printer", config=elsewhere))
        assert pieces[-1].ended
        followed = ticks("".join(p.text for p in pieces))
        assert len(followed) >= len(shipped) and followed == [f"tick {i}" for i in range(len(followed))]
        assert ops.get_task_execution(execution_id, "printer", config=config).status == "FAILED"
    finally:
        stop_processes([p for p in (scheduler, doomed, witness) if p is not None])
