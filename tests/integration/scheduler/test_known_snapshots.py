"""Only snapshots the workflows topic lists run: a START or a task command written by hand that names any
other snapshot fails, with the reason, and nothing of it is fetched or started."""

from __future__ import annotations

import uuid

from aiflow import ops
from aiflow.kafka import sending, topics
from aiflow.ops._publish import send_inbox_command
from aiflow.protocol.messages import Command, TaskCommand
from tests.conftest import read_topic
from tests.integration.scheduler.conftest import System

FLOW = """
from aiflow import Workflow, BashOperator

with Workflow(name="known"):
    BashOperator(name="only", bash_command="echo ran >> ../ran.txt")
"""


def test_a_start_naming_a_snapshot_the_workflow_does_not_list_fails_with_the_reason(system: System) -> None:
    system.upload(FLOW)
    [snapshot] = ops.list_workflow_snapshots("known", config=system.config)
    forged = uuid.uuid4().hex[:12]
    send_inbox_command(system.config, "default", "known", Command.START_EXECUTION, forged, args={
        "snapshot_version": str(snapshot.version), "snapshot_uri": snapshot.uri, "snapshot_sha256": "0" * 64,
        "workflow_file": snapshot.workflow_file, "run_type": "MANUAL", "cause": "written by hand"})
    system.wait_for(lambda: system.status(forged) == "FAILED", what="the forged start to fail")
    failed = ops.get_workflow_execution(forged, config=system.config)
    assert failed is not None and "is not a snapshot the workflows topic announced" in failed.message
    assert ops.list_task_executions(forged, config=system.config) == []

    genuine = ops.start_workflow_execution("known", config=system.config)  # the real one still runs
    system.wait_for(lambda: system.status(genuine) == "SUCCESS", what="the genuine execution")


def test_a_task_command_naming_another_workflows_snapshot_is_refused_by_the_worker(system: System) -> None:
    system.upload(FLOW)
    system.upload(FLOW.replace('name="known"', 'name="other"'), name="other.py")
    [other] = ops.list_workflow_snapshots("other", config=system.config)
    # The worker must hold the tasks partitions first: a command already there when a partition without
    # committed offsets is assigned counts as old, and is checked against the state instead (lost offsets).
    warm_up = ops.start_workflow_execution("known", config=system.config)
    system.wait_for(lambda: system.status(warm_up) == "SUCCESS", what="a first execution")
    # A real snapshot, in the blob store, but of another workflow: the worker must not run it as "known".
    command = TaskCommand("default", "known", "e" * 12, "only", 1, other.uri, other.sha256, other.workflow_file)
    sending.send(system.config, command.to_record())
    system.wait_for(lambda: any(b"not one the workflows topic lists" in dict(m.headers())["aiflow.dlq.reason"]
                                for m in read_topic(system.config, topics.DLQ)), what="the dead letter")
    assert not (system.config.home / "working_dir" / "known" / ("e" * 12)).exists()  # nothing fetched or run


def test_a_deleted_snapshot_version_is_no_longer_listed(system: System) -> None:
    system.upload(FLOW)
    system.upload(FLOW.replace("echo ran", "echo ran again"))
    first, second = sorted(ops.list_workflow_snapshots("known", config=system.config), key=lambda s: s.version)
    ops.delete_workflow_snapshot("known", first.version, config=system.config)
    from aiflow.kafka.readers import DefinitionFollower

    follower = DefinitionFollower(system.config, "test")
    try:
        follower.catch_up()
        wid = ("default", "known")
        assert follower.announced(wid, second.uri, second.sha256, second.workflow_file, second.version)
        assert not follower.announced(wid, first.uri, first.sha256, first.workflow_file, first.version)
    finally:
        follower.close()
