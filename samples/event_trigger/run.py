"""Run the event-trigger sample: an execution of `producer` starts one of `consumer` through a trigger.

Needs aiflow running: `aiflow standalone -d`. Usage: python samples/event_trigger/run.py
"""

from __future__ import annotations

import time
from pathlib import Path

from aiflow import SingleEventCondition, WorkflowRule, ops


def main() -> None:
    ops.upload_workflows(Path(__file__).with_name("event_trigger_workflows.py"))
    if not ops.list_workflow_triggers("consumer"):
        ops.add_workflow_trigger(WorkflowRule(SingleEventCondition("data_ready")), "consumer")
    before = {e.id for e in ops.list_workflow_executions("consumer")}
    producer = ops.start_workflow_execution("producer")
    print(f"producer execution {producer} started")
    deadline = time.monotonic() + 120
    while True:
        new = [e for e in ops.list_workflow_executions("consumer") if e.id not in before and e.status == "SUCCESS"]
        if new:
            break
        if time.monotonic() > deadline:
            raise SystemExit("no consumer execution within 2 minutes")
        time.sleep(0.5)
    print(f"consumer execution {new[0].id}: {new[0].status}, run type {new[0].run_type}, cause: {new[0].cause}")


if __name__ == "__main__":
    main()
