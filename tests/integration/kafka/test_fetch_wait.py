"""Consumers that follow their partitions wait long between idle fetches; what they must answer at once
is asked on a connection of its own (aiflow/kafka/clients.py, readers.py)."""

from __future__ import annotations

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
    monkeypatch.setattr(clients, "FOLLOW_FETCH_WAIT_MS", LONG_WAIT_MS)
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
