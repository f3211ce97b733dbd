"""Settled executions leave the state topic: once the projector has written one to the database it
tombstones its key, a scheduler's restore no longer sees it, and the database still lists it."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from aiflow import ops
from aiflow.kafka import topics
from aiflow.kafka.readers import SETTLED_HEADER, read_state
from aiflow.scheduler.service import Scheduler
from tests.conftest import read_topic
from tests.integration.scheduler.conftest import System

FLOW = """
from aiflow import Workflow, BashOperator, TaskAction
with Workflow(name="settles"):
    BashOperator(name="quick", bash_command="true")
with Workflow(name="lasts"):
    BashOperator(name="keepalive", bash_command="sleep 1000")
"""


def test_a_settled_execution_is_tombstoned_once_projected_and_no_longer_restored(system: System) -> None:
    system.upload(FLOW)
    done = ops.start_workflow_execution("settles", config=system.config)
    alive = ops.start_workflow_execution("lasts", config=system.config)
    system.wait_for(lambda: system.status(done) == "SUCCESS", what="the execution to succeed")
    system.wait_for(lambda: system.tries(alive).get("keepalive") == ["RUNNING"], what="the long task to run")

    def records_of(execution_id: str) -> list[Any]:
        return [m for m in read_topic(system.config, topics.STATE) if m.key() == execution_id.encode()]

    system.wait_for(lambda: records_of(done)[-1:] and records_of(done)[-1].value() is None,
                    what="the settled execution's tombstone")
    *before, tombstone = records_of(done)
    assert before and dict(before[-1].headers() or []) == {SETTLED_HEADER: b"1"}
    assert tombstone.partition() == before[-1].partition()
    assert all(m.value() is not None for m in records_of(alive))

    partitions = range(topics.partition_count(system.config, topics.STATE))
    settled: dict[str, int] = {}
    state = read_state(system.config, partitions, "test", settled=settled)
    assert ("EXECUTION", done) not in state and done not in settled
    assert ("EXECUTION", alive) in state
    assert ("EXECUTION", done) in read_state(system.config, partitions, "test", keep_tombstoned=True)  # db rebuild

    restoring = Scheduler(system.config)
    try:
        restoring._restore([TopicPartition(topics.name(system.config, topics.INBOX), p) for p in partitions])
        assert done not in restoring.executions and alive in restoring.executions
    finally:
        restoring.loop.close()
        restoring.definitions.close()

    info = ops.get_workflow_execution(done, config=system.config)
    assert info is not None and info.status == "SUCCESS"
    assert [e.id for e in ops.list_workflow_executions("settles", config=system.config)] == [done]
    assert system.tries(done) == {"quick": ["SUCCESS"]}
    ops.stop_workflow_execution(alive, config=system.config)
