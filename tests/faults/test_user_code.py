"""User code cannot hurt the services: while a workflow handles 200 events, a workflow whose file loops
forever at import is started, and a trigger names a condition class the scheduler's host lacks. All
200 events start their task exactly once, the bad execution is FAILED with its reason, the trigger is
paused with its reason, and no service restarted.

The bad file passes the upload (it loops only once a marker file exists, as a file that waits for a
resource at import would), so it is the scheduler that meets the loop.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from aiflow import EventClient, WorkflowRule, ops
from tests.conftest import fault_setup, stop_processes, wait_until
from tests.faults.test_junk_everywhere import TASKS, WORKFLOW, assert_running, lines, round_done, start_services

ROUNDS = 20  # 200 events
BAD_AT = 3  # the round in which the bad execution starts

BAD = """
import os
from aiflow import Workflow, BashOperator

if os.path.exists({marker!r}):
    while True:  # at import, in the scheduler
        pass

with Workflow(name="looping"):
    BashOperator(name="never", bash_command="echo never >> ../never.txt")
"""

VANISHING = """
from aiflow import Condition

class Vanishing(Condition):
    def is_met(self, event, context):
        return True
"""


def test_a_looping_workflow_file_and_a_missing_trigger_class_hurt_nobody(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, config = fault_setup(tmp_path, kafka_bootstrap, "junked", WORKFLOW, AIFLOW_WORKER_STOP_GRACE="2",
                              AIFLOW_WORKFLOWS_LOAD_TIMEOUT="5")
    marker = tmp_path / "loop-now"
    bad = tmp_path / "looping.py"
    bad.write_text(BAD.format(marker=str(marker)))
    ops.upload_workflows(bad, config=config)
    # A trigger whose condition class exists where it was added, and nowhere the scheduler can import it.
    module = tmp_path / "vanishing_conditions.py"
    module.write_text(VANISHING)
    sys.path.insert(0, str(tmp_path))
    try:
        from vanishing_conditions import Vanishing  # type: ignore[import-not-found]

        trigger = ops.add_workflow_trigger(WorkflowRule(Vanishing(["k0"])), "junked", config=config)
    finally:
        sys.path.remove(str(tmp_path))
    module.unlink()
    marker.touch()

    logs = tmp_path / "logs"
    logs.mkdir()
    services = start_services(env, logs, 0)
    try:
        execution_id = ops.start_workflow_execution("junked", config=config, wait=60)
        ran = tmp_path / "home" / "working_dir" / "junked" / execution_id / "ran.txt"
        bad_id = ""
        with EventClient(config) as client:
            for round_number in range(ROUNDS):
                for i in range(TASKS):
                    client.send_event(f"k{i}", f"round {round_number}")
                if round_number == BAD_AT:
                    bad_id = ops.start_workflow_execution("looping", config=config, wait=0)
                wait_until(lambda n=round_number: lines(ran) >= TASKS * (n + 1) and round_done(config, execution_id, n),
                           300, f"round {round_number}: {lines(ran)} tries")
        time.sleep(3)
        expected = Counter({f"t{i} {r + 1}": 1 for i in range(TASKS) for r in range(ROUNDS)})
        got = Counter(ran.read_text().splitlines())
        assert got == expected, f"{got - expected} extra, {expected - got} missing"

        wait_until(lambda: ops.get_workflow_execution(bad_id, config=config) is not None, 60, "the bad execution")
        failed = ops.get_workflow_execution(bad_id, config=config)
        assert failed is not None and failed.status == "FAILED"
        assert "did not answer within 5 s" in failed.message and "looping" in failed.message, failed.message
        assert ops.list_task_executions(bad_id, config=config) == []  # it ran nothing

        def paused() -> bool:
            info = ops.get_workflow_trigger(trigger.id, config=config)
            return info.is_paused and "vanishing_conditions" in info.pause_reason
        wait_until(paused, 60, lambda: ops.get_workflow_trigger(trigger.id, config=config))
        # The other workflow's execution is untouched, and no service restarted.
        assert ops.get_workflow_execution(execution_id, config=config).status == "RUNNING"  # type: ignore[union-attr]
        assert_running(services)
    finally:
        marker.unlink(missing_ok=True)
        stop_processes(services)
    for log in logs.iterdir():
        assert " stopped: " not in log.read_text(), f"{log.name}: a service failed"
