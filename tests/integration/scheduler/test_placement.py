"""Worker placement on the real broker: a task's queue decides which workers may run it; a try whose
queue has no live worker says so in `task-execution list`, and runs once a worker of its queue starts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiflow import ops
from aiflow.cli.main import cli
from aiflow.config import Config
from aiflow.kafka import clients, topics
from aiflow.scheduler.process import run_services
from aiflow.scheduler.router import Router
from aiflow.scheduler.service import Scheduler
from aiflow.store.projector import Projector
from aiflow.worker.service import Worker
from tests.conftest import make_config
from tests.integration.scheduler.conftest import System

PLACED = """
from aiflow import Workflow, BashOperator

with Workflow(name="placed"):
    BashOperator(name="prepare", bash_command="true")
    BashOperator(name="train", bash_command="true", queue="gpu")
"""

WAITING = "waiting: no live worker for queue 'gpu'"


@dataclass
class Placement(System):
    stops: list[threading.Event] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start_worker(self, name: str, queues: tuple[str, ...]) -> None:
        worker = Worker(self.config, slots=2, name=name, heartbeat_interval=1.0, stop_grace=3.0, queues=queues)
        self._run(name, [(name, worker.run)])

    def _run(self, label: str, services: list[tuple[str, object]]) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=run_services, args=(label, services, stop), daemon=True)
        thread.start()
        self.stops.append(stop)
        self.threads.append(thread)

    def tries_of(self, execution_id: str) -> dict[str, dict[str, object]]:
        """The latest try of each task, as `aiflow task-execution list -o json` prints it."""
        result = CliRunner().invoke(cli, ["task-execution", "list", execution_id, "-o", "json"],
                                    env={"AIFLOW_HOME": str(self.config.home),
                                         "AIFLOW_KAFKA_BOOTSTRAP": self.config.bootstrap,
                                         "AIFLOW_TOPIC_PREFIX": self.config.topic_prefix})
        assert result.exit_code == 0, result.output
        return {t["task"]: t for t in json.loads(result.output)}


@pytest.fixture
def placement(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Placement]:
    # Beacons every second, so a queue without a worker is known as such after 3 s.
    config = make_config(tmp_path / "home", kafka_bootstrap, AIFLOW_HEARTBEAT_TIMEOUT="30",
                         AIFLOW_WORKER_HEARTBEAT_INTERVAL="1")
    topics.create_topics(config)
    system = Placement(config, tmp_path)
    system._run("scheduler", [("router", Router(config).run), ("scheduler", Scheduler(config).run),
                              ("projector", Projector(config).run)])
    system.start_worker("cpu-worker", ("default",))
    yield system
    for stop in system.stops:
        stop.set()
    for thread in system.threads:
        thread.join(timeout=60)


def _topic_exists(config: Config, queue: str) -> bool:
    name = topics.name(config, topics.tasks_role(queue))
    return name in clients.admin(config).list_topics(timeout=10).topics


def test_each_try_runs_on_a_worker_of_its_queue_and_waits_visibly_for_one(placement: Placement) -> None:
    config = placement.config
    placement.upload(PLACED)
    first = ops.start_workflow_execution("placed", config=config)
    t0 = time.monotonic()

    # No gpu worker: the default task runs on the default worker; the gpu task waits, and says why.
    placement.wait_for(lambda: placement.tries_of(first).get("prepare", {}).get("status") == "SUCCESS",
                       what="prepare to succeed on the default worker")
    placement.wait_for(lambda: placement.tries_of(first).get("train", {}).get("message") == WAITING, timeout=30,
                       what="train to say that it waits for a gpu worker")
    tries = placement.tries_of(first)
    print(f"waiting reason shown {time.monotonic() - t0:.1f} s after the start")
    assert tries["prepare"]["worker"] == "cpu-worker"
    assert tries["train"]["status"] == "QUEUED" and tries["train"]["worker"] == ""
    assert _topic_exists(config, "gpu")  # created by the scheduler before it sent the START
    table = CliRunner().invoke(cli, ["task-execution", "list", first],
                               env={"AIFLOW_HOME": str(config.home), "AIFLOW_KAFKA_BOOTSTRAP": config.bootstrap,
                                    "AIFLOW_TOPIC_PREFIX": config.topic_prefix})
    assert WAITING in table.output

    # A gpu worker starts: the waiting try runs there, and its mark is gone.
    t1 = time.monotonic()
    placement.start_worker("gpu-worker", ("gpu",))
    placement.wait_for(lambda: placement.status(first) == "SUCCESS", timeout=60, what="the execution to succeed")
    print(f"waiting try done {time.monotonic() - t1:.1f} s after the gpu worker started")
    tries = placement.tries_of(first)
    assert (tries["train"]["worker"], tries["train"]["message"], tries["train"]["try_number"]) == ("gpu-worker", "", 1)

    # With both workers up, each try lands on the worker of its queue at once.
    for _ in range(2):
        execution_id = ops.start_workflow_execution("placed", config=config)
        placement.wait_for(lambda eid=execution_id: placement.status(eid) == "SUCCESS",  # type: ignore[misc]
                           what="a second execution to succeed")
        tries = placement.tries_of(execution_id)
        assert {task: t["worker"] for task, t in tries.items()} == {"prepare": "cpu-worker", "train": "gpu-worker"}
        assert all(t["message"] == "" and t["try_number"] == 1 for t in tries.values())


def test_a_start_written_to_the_wrong_queues_topic_is_refused(placement: Placement) -> None:
    """A command on a topic that is not its queue's (written by hand) is dead-lettered and its try FAILED."""
    from aiflow.kafka import sending
    from aiflow.protocol.messages import TaskCommand
    from aiflow.protocol.records import Record
    from tests.conftest import read_topic

    config = placement.config
    # A first try on the default worker: its group then has committed offsets, so a command written
    # now is new to it (not one of those checked against the state, as after lost offsets).
    placement.upload('from aiflow import Workflow, BashOperator\nwith Workflow(name="warm"):\n'
                     '    BashOperator(name="t", bash_command="true")\n')
    warm = ops.start_workflow_execution("warm", config=config)
    placement.wait_for(lambda: placement.status(warm) == "SUCCESS", what="a first execution")
    command = TaskCommand("default", "placed", "e-wrong", "train", 1, "file:///nowhere.zip", "ab" * 32, "flow.py",
                          queue="gpu")
    record = command.to_record()
    sending.send(config, Record(topics.TASKS, record.key, record.value))  # onto the default queue's topic
    placement.wait_for(lambda: any(b"queue 'gpu' on the tasks topic of queue 'default'" in
                                   dict(m.headers() or []).get("aiflow.dlq.reason", b"")
                                   for m in read_topic(config, topics.DLQ, timeout=2)),
                       timeout=30, what="the dead letter")
