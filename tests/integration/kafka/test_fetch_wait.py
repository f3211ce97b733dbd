"""Consumers that follow their partitions wait long between idle fetches; what they must answer at once
is asked on a connection of its own (aiflow/kafka/clients.py, readers.py)."""

from __future__ import annotations

import threading
import time

import pytest

from aiflow.config import Config
from aiflow.kafka import clients, sending
from aiflow.kafka.readers import DefinitionFollower
from aiflow.protocol.messages import WorkflowDefinition

# Far longer than any question below may take: asked behind an idle fetch, a question would wait it out.
LONG_WAIT_MS = 6000


def test_a_following_definition_reader_reads_to_the_end_while_its_own_fetch_waits(
        kafka_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker answers one request of a connection at a time: asked of the follower's own consumer,
    where the topic ends would wait behind its idle fetch (up to the fetch wait) and `read_to_end` would
    give up after its timeout, so a START just after an upload would wait for the definition."""
    monkeypatch.setattr(clients, "LISTEN_FETCH_WAIT_MS", LONG_WAIT_MS)
    config = kafka_config
    follower = DefinitionFollower(config, "test")
    try:
        follower.poll(timeout=1.0)  # the topic is empty: the follower's fetch now waits at the broker
        definition = WorkflowDefinition("default", "flow", 1, "file:///flow.zip", "0" * 64, "flow.py",
                                        rule_keys=(("default", "go"),))
        sending.send(config, definition.to_record())  # the append ends that fetch; the next one waits again
        time.sleep(0.5)
        assert follower.read_to_end(timeout=2.0)
        assert follower.definitions[("default", "flow")] == definition
        assert follower.read_to_end(timeout=2.0)  # nothing new, its fetch waiting: answered all the same
    finally:
        follower.close()


def test_a_following_definition_reader_catches_up_without_waiting_for_its_idle_fetch(
        kafka_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service reads the workflows topic to its end before it starts. The end-of-partition notice comes
    with a fetch's answer, and the follower's fetch at the end answers only when its wait runs out: caught
    up that way, every service's start would take the fetch wait. It asks where the topic ends instead."""
    monkeypatch.setattr(clients, "LISTEN_FETCH_WAIT_MS", LONG_WAIT_MS)
    config = kafka_config
    definitions = [WorkflowDefinition("default", f"flow{i}", 1, "file:///flow.zip", "0" * 64, "flow.py")
                   for i in range(3)]
    for definition in definitions:
        sending.send(config, definition.to_record())
    follower = DefinitionFollower(config, "test")
    stop = threading.Event()
    # Well before the follower's second fetch (the one at the end) could answer.
    timer = threading.Timer(LONG_WAIT_MS / 2000, stop.set)
    timer.start()
    try:
        follower.catch_up(stop)
        assert follower.caught_up, "caught up only when stopped: it waited for its idle fetch"
        assert [follower.definitions[("default", f"flow{i}")] for i in range(3)] == definitions
    finally:
        timer.cancel()
        follower.close()
