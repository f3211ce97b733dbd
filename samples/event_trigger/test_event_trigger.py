"""The event trigger sample: `ingest` of workflow producer sends `data_ready`, which a trigger turns
into a new execution of workflow consumer."""

from pathlib import Path

from aiflow import SingleEventCondition, WorkflowRule
from aiflow.testing import WorkflowTest

FLOW = Path(__file__).with_name("event_trigger_workflows.py")


def test_the_event_ingest_sends_starts_an_execution_of_consumer() -> None:
    wt = WorkflowTest(FLOW)
    wt.add_trigger(WorkflowRule(SingleEventCondition("data_ready")), "consumer")  # as run.py adds it
    producer = wt.start("producer")
    wt.run_tasks()  # ingest's callable, then the consumer's bash command
    assert producer.status == "SUCCESS"
    assert [(e.key, e.value, e.task) for e in wt.events] == [("data_ready", "batch-42", "ingest")]
    [consumer] = wt.executions("consumer")
    assert consumer.run_type == "EVENT" and consumer.cause == "trigger 1 on event 'data_ready'"
    assert consumer.status == "SUCCESS" and consumer.started() == ["process"]


def test_each_data_ready_starts_one_more_consumer_execution() -> None:
    wt = WorkflowTest(FLOW)
    wt.add_trigger(SingleEventCondition("data_ready"), "consumer")
    wt.send_event("data_ready", "batch-1")
    wt.send_event("data_ready", "batch-2")
    wt.send_event("other_key")
    assert [e.status for e in wt.executions("consumer")] == ["RUNNING", "RUNNING"]


def test_without_the_trigger_consumer_never_runs() -> None:
    wt = WorkflowTest(FLOW)
    wt.start("producer")
    wt.run_tasks()
    assert wt.executions("consumer") == []
