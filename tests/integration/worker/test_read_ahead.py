"""A full worker reads the commands queued behind its busy slots ahead, on the real broker: it commits none
of them (its heartbeats commit while they wait), so a worker that takes its partitions after it runs each
of them exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from aiflow import ops
from aiflow.config import Config
from aiflow.kafka import clients, topics
from aiflow.protocol.topics import DEFAULT_QUEUE, tasks_role
from aiflow.scheduler.process import run_services
from aiflow.scheduler.router import Router
from aiflow.scheduler.service import Scheduler
from aiflow.store.projector import Projector
from aiflow.worker import service
from aiflow.worker.service import Worker
from tests.conftest import make_config

SHORTS = 5


def _flow(ran: Path) -> str:
    return f"""
from aiflow import Workflow, BashOperator

with Workflow(name="holder"):
    BashOperator(name="hold", bash_command="sleep 1000")

with Workflow(name="short"):
    for i in range({SHORTS}):
        BashOperator(name=f"s{{i}}", bash_command=f"echo $AIFLOW_EXECUTION_ID s{{i}} $AIFLOW_TRY_NUMBER >> {ran}")
"""


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except RuntimeError:  # the worker's thread changed what was being read: ask again
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _run(label: str, services: list[tuple[str, Callable[[threading.Event], None]]]) -> Callable[[], None]:
    stop = threading.Event()
    thread = threading.Thread(target=run_services, args=(label, services, stop), daemon=True)
    thread.start()

    def stopping() -> None:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive(), f"{label} did not stop"
    return stopping


def _set_up(kafka_bootstrap: str, tmp_path: Path) -> tuple[Config, Path, list[Callable[[], None]]]:
    """Topics of its own, the two workflows uploaded, and a scheduler (router, scheduler, projector) running:
    the configuration, the file the short tasks write to, and what stops the scheduler."""
    config = make_config(tmp_path / "home", kafka_bootstrap, AIFLOW_HEARTBEAT_TIMEOUT="30")
    topics.create_topics(config)
    ran = tmp_path / "ran.txt"
    flow = tmp_path / "flow.py"
    flow.write_text(_flow(ran))
    ops.upload_workflows(flow, config=config)
    return config, ran, [_run("scheduler", [("router", Router(config).run), ("scheduler", Scheduler(config).run),
                                            ("projector", Projector(config).run)])]


def test_commands_read_ahead_are_not_committed_and_the_next_worker_runs_each_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    config, ran, stops = _set_up(kafka_bootstrap, tmp_path)
    # One slot, and no leaving the group while full within the test: the commands stay with this worker.
    first = Worker(config, slots=1, name="first", heartbeat_interval=1.0, stop_grace=3.0, leave_when_full_after=600)
    stop_first = _run("first", [("worker", first.run)])
    try:
        holder = ops.start_workflow_execution("holder", config=config, wait=60)
        _wait_for(lambda: ops.get_task_execution(holder, "hold", config=config).status == "RUNNING",
                  "the holding try to run")
        shorts = [ops.start_workflow_execution("short", config=config, wait=60) for _ in range(3)]
        _wait_for(lambda: len(first.read_ahead) == 3 * SHORTS, "the worker to read every command ahead")
        time.sleep(2.5)  # heartbeats commit meanwhile (every second), with the commands still read ahead
        assert len(first.read_ahead) == 3 * SHORTS and first.running.keys() == {(holder, "hold", 1)}
        not_taken = first.read_ahead.not_taken()
        tasks_topic = topics.name(config, tasks_role(DEFAULT_QUEUE))
        group = clients.consumer(config, role="test", group_id=f"{config.topic_prefix}-worker")
        try:
            committed = group.committed([TopicPartition(topic, partition) for topic, partition in not_taken],
                                        timeout=30)
        finally:
            group.close()
        assert {(tp.topic, tp.partition): tp.offset for tp in committed} == not_taken
        assert {topic for topic, _ in not_taken} == {tasks_topic}
        for execution_id in shorts:
            assert {t.status for t in ops.list_task_executions(execution_id, config=config)} == {"QUEUED"}

        stop_first()  # its running try is handed back; the commands it read ahead stay in Kafka
        stop_first = lambda: None  # noqa: E731
        second = Worker(config, slots=6, name="second", heartbeat_interval=1.0, stop_grace=3.0)
        stops.append(_run("second", [("worker", second.run)]))
        _wait_for(lambda: all(ops.get_workflow_execution(e, config=config).status == "SUCCESS"  # type: ignore[union-attr]
                              for e in shorts), "the short executions to succeed on the second worker")
        assert Counter(ran.read_text().splitlines()) == Counter(
            {f"{e} s{i} 1": 1 for e in shorts for i in range(SHORTS)})
        assert {t.worker for e in shorts for t in ops.list_task_executions(e, config=config)} == {"second"}
        ops.stop_workflow_execution(holder, config=config)
    finally:
        stop_first()
        for stop in reversed(stops):
            stop()


def test_a_worker_paused_when_full_fetches_again_once_a_rebalance_gives_its_partitions_back(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka keeps a partition paused through its revocation. A full worker that had paused its
    partitions, and got them back from a rebalance, must resume them: else it never fetches them again,
    and with a slot free it sits idle while its commands wait."""
    monkeypatch.setattr(service, "READ_AHEAD", 4)
    monkeypatch.setattr(service, "RESUME_BELOW", 2)
    config, ran, stops = _set_up(kafka_bootstrap, tmp_path)
    worker = Worker(config, slots=1, name="only", heartbeat_interval=1.0, stop_grace=3.0, leave_when_full_after=600)
    stops.append(_run("worker", [("worker", worker.run)]))
    try:
        holder = ops.start_workflow_execution("holder", config=config, wait=60)
        _wait_for(lambda: ops.get_task_execution(holder, "hold", config=config).status == "RUNNING",
                  "the holding try to run")
        shorts = [ops.start_workflow_execution("short", config=config, wait=60) for _ in range(2)]
        _wait_for(lambda: worker.paused, "the full worker to read ahead all it may and pause")

        # Another member joins the worker's group, then leaves: every partition is revoked, and all come
        # back to the worker. It reads nothing ahead any more, so it must fetch them again.
        revoked = worker.loop.revocations
        intruder = clients.consumer(config, role="test", group_id=f"{config.topic_prefix}-worker")
        intruder.subscribe([topics.name(config, tasks_role(DEFAULT_QUEUE))])
        try:
            deadline = time.monotonic() + 60
            while not intruder.assignment():
                assert time.monotonic() < deadline, "the other member got no partition"
                intruder.poll(0.1)
        finally:
            intruder.close()
        _wait_for(lambda: worker.loop.revocations >= revoked + 2, "the worker to get its partitions back")

        ops.stop_workflow_execution(holder, config=config)  # its slot frees
        _wait_for(lambda: all(ops.get_workflow_execution(e, config=config).status == "SUCCESS"  # type: ignore[union-attr]
                              for e in shorts), "the short executions to succeed")
        assert Counter(ran.read_text().splitlines()) == Counter(
            {f"{e} s{i} 1": 1 for e in shorts for i in range(SHORTS)})
    finally:
        for stop in reversed(stops):
            stop()
