"""Run the periodic sample: scheduled executions of `nightly`, and `refresh`'s periodic task.

Needs aiflow running: `aiflow standalone -d`. Usage: python samples/periodic/run.py
"""

from __future__ import annotations

import time
from pathlib import Path

from aiflow import ops


def main() -> None:
    ops.upload_workflows(Path(__file__).with_name("periodic_workflows.py"))
    schedules = [ops.add_workflow_schedule("interval@0 0 0 5", "nightly"),
                 ops.add_workflow_schedule("cron@0 3 * * *", "nightly")]
    print("schedules: " + ", ".join(f"{s.id} {s.expression}" for s in schedules))
    refresh = ops.start_workflow_execution("refresh")
    deadline = time.monotonic() + 120
    while True:
        nightly = ops.list_workflow_executions("nightly")
        reports = [t for t in ops.list_task_executions(refresh) if t.task == "report" and t.status == "SUCCESS"]
        if len(nightly) >= 2 and len(reports) >= 2:
            break
        if time.monotonic() > deadline:
            raise SystemExit("the schedules did not run within 2 minutes")
        time.sleep(0.5)
    for s in schedules:
        ops.delete_workflow_schedule(s.id)
    ops.stop_workflow_execution(refresh)
    print(f"nightly ran {len(nightly)} times: " + ", ".join(f"{e.id} ({e.run_type})" for e in nightly))
    print(f"refresh {refresh}: " + ", ".join(f"{t.task}#{t.try_number} {t.status}"
                                            for t in ops.list_task_executions(refresh)))


if __name__ == "__main__":
    main()
