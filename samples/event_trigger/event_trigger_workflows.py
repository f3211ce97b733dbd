"""An event trigger: a task of one workflow starts an execution of another.

`ingest` (workflow `producer`) sends the event `data_ready` when its data is in place. The
workflow `consumer` has no rule on that key; a workflow trigger (added by run.py with
`ops.add_workflow_trigger(WorkflowRule(SingleEventCondition("data_ready")), "consumer")`) starts a
new execution of it each time the event arrives. Run it with `python samples/event_trigger/run.py`.
"""

from aiflow import BashOperator, EventClient, PythonOperator, Workflow


def ingest() -> None:
    with EventClient() as client:
        client.send_event("data_ready", "batch-42")


with Workflow(name="producer"):
    PythonOperator(name="ingest", python_callable=ingest)

with Workflow(name="consumer"):
    BashOperator(name="process", bash_command="echo processing the new batch")
