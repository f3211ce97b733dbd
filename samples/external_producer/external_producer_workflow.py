"""A task started by a plain Kafka producer that knows nothing of aiflow.

`load` starts whenever a record with key `file_landed` arrives on the events topic — here written by
run.py with confluent-kafka's plain Producer (any producer works: kcat, Kafka Connect, a Java service).
The record's value, as text, is the event's value. `watch` keeps the execution running.
Run it with `python samples/external_producer/run.py`.
"""

from aiflow import BashOperator, TaskAction, Workflow

with Workflow(name="external_producer"):
    BashOperator(name="watch", bash_command="sleep 100000")
    load = BashOperator(name="load", bash_command="echo loading a landed file")
    load.action_on_event_received(action=TaskAction.START, event_key="file_landed")
