"""Upload the quickstart workflow, run one execution to its end and print what each task did.

Needs aiflow running: `aiflow standalone -d` (or a scheduler and a worker). Usage:
    python samples/quickstart/run.py
"""

from __future__ import annotations

import time
from pathlib import Path

from aiflow import ops


def main() -> None:
    ops.upload_workflows(Path(__file__).with_name("quickstart_workflow.py"))
    execution_id = ops.start_workflow_execution("quickstart")
    print(f"execution {execution_id} started")
    deadline = time.monotonic() + 120
    while (execution := ops.get_workflow_execution(execution_id)) is None or execution.status == "RUNNING":
        if time.monotonic() > deadline:
            raise SystemExit("the execution did not finish within 2 minutes")
        time.sleep(0.5)
    print(f"execution {execution_id}: {execution.status}")
    for t in ops.list_task_executions(execution_id):
        output = ops.task_log_path(execution_id, t.task, t.try_number).read_text().splitlines()
        said = [line for line in output if " INFO " not in line]
        print(f"  {t.task:6} {t.status:8} said {said!r}  ({t.cause})")


if __name__ == "__main__":
    main()
