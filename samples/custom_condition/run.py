"""Run the custom-condition sample: the producers run until their numbers add up to 100, then stop.

Needs aiflow running: `aiflow standalone -d`. Usage: python samples/custom_condition/run.py
"""

from __future__ import annotations

import time
from pathlib import Path

from aiflow import EventClient, ops


def main() -> None:
    ops.upload_workflows(Path(__file__).with_name("custom_condition_workflow.py"))
    execution_id = ops.start_workflow_execution("custom_condition")
    print(f"execution {execution_id} started; producers send numbers until they add up to 100")
    deadline = time.monotonic() + 120
    # The execution is STOPPED as soon as one producer's try is; the other one is stopped after that.
    while (execution := ops.get_workflow_execution(execution_id)) is None or execution.status == "RUNNING" or \
            any(t.end_date is None for t in ops.list_task_executions(execution_id)):
        if time.monotonic() > deadline:
            raise SystemExit("the producers were not stopped within 2 minutes")
        time.sleep(0.5)
    with EventClient() as client:
        numbers = [int(e.value or 0) for e in client.list_events(key="number") if e.execution_id == execution_id]
    print(f"execution {execution_id}: {execution.status}")
    for t in ops.list_task_executions(execution_id):
        print(f"  {t.task}: {t.status}")
    print(f"the producers sent {len(numbers)} numbers adding up to {sum(numbers)}")


if __name__ == "__main__":
    main()
