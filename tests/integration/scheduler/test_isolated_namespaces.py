"""The router dead-letters an event that a task of an isolated namespace sent into another namespace,
and routes the events it sends into its own, on the real broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aiflow.config import Config
from aiflow.events.client import EventClient
from aiflow.events.context import TaskContext
from aiflow.kafka import clients, sending, topics
from aiflow.kafka.readers import read_dead_letters
from aiflow.protocol.messages import WorkflowDefinition
from aiflow.scheduler.router import Router
from tests.conftest import make_config, read_topic

SHA = "0" * 64


def test_an_event_from_an_isolated_task_into_another_namespace_is_dead_lettered(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path / "home", kafka_bootstrap, AIFLOW_WORKER_ISOLATED_NAMESPACES="ml")
    topics.create_topics(config)
    producer = clients.producer(config, role="test")
    for namespace in ("ml", "billing"):  # a workflow of the task's name in both namespaces listens to "go"
        definition = WorkflowDefinition(namespace=namespace, workflow="training", version=1, snapshot_uri="file:///x",
                                        snapshot_sha256=SHA, workflow_file="flow/flow.py",
                                        rule_keys=((namespace, "go"),))
        sending.produce(producer, config, definition.to_record())
    assert producer.flush(30) == 0
    stop = threading.Event()
    thread = threading.Thread(target=Router(config).run, args=(stop,), daemon=True)
    thread.start()
    try:
        # A task whose client does not know of the isolation (an old client, or one past its check).
        task = TaskContext(namespace="ml", workflow="training", execution_id="e1", task="train", try_number=1)
        for name, value in task.to_env().items():
            monkeypatch.setenv(name, value)
        unaware = Config.load(home=config.home, environ={"AIFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
                                                         "AIFLOW_TOPIC_PREFIX": config.topic_prefix})
        with EventClient(unaware) as client:
            client.send_event("go", "own namespace")
            breach = client.send_event("go", "elsewhere", namespace="billing")
        deadline = time.monotonic() + 60
        while not (letters := read_dead_letters(config)) and time.monotonic() < deadline:
            time.sleep(0.3)
        [letter] = letters
        assert letter.reporter == "router" and letter.source.endswith(f"/{breach.partition}/{breach.offset}")
        assert "isolated namespace 'ml' sent an event into namespace 'billing'" in letter.reason
        inbox = [msg.key() for msg in read_topic(config, topics.INBOX)]
        assert inbox == [b"ml/training"]
    finally:
        stop.set()
        thread.join(timeout=30)
