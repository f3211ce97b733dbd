"""Periodic work: schedules that start executions, and a periodic task with a downstream task.

`nightly` is started by schedules that run.py adds (`interval@0 0 0 5`, and a cron one for
show). In `refresh`, the task `poll` is restarted every 3 seconds by its `periodic_expression`,
and `report` starts after each successful `poll`. Run it with `python samples/periodic/run.py`.
"""

from aiflow import BashOperator, Workflow

with Workflow(name="nightly"):
    BashOperator(name="rollup", bash_command="echo rolling up")

with Workflow(name="refresh"):
    poll = BashOperator(name="poll", bash_command="echo polling", periodic_expression="interval@0 0 0 3")
    report = BashOperator(name="report", bash_command="echo reporting")
    report.start_after(poll)
