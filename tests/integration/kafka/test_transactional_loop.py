"""The transactional loop against a real broker: leaving the group and committing afterwards."""

from __future__ import annotations

import time

from aiflow.config import Config
from aiflow.kafka import clients, sending, topics
from aiflow.kafka.transactions import TransactionalLoop
from aiflow.protocol.messages import Event


def _assigned(loop: TransactionalLoop, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not loop.consumer.assignment():
        assert time.monotonic() < deadline, "no partitions assigned"
        loop.poll(timeout=0.1)
        loop.abort()


def test_a_member_that_left_the_group_hands_its_partitions_over_at_once_and_still_commits(
        kafka_config: Config) -> None:
    """A full worker leaves the group and goes on committing heartbeats with no input. Its partitions
    must move without waiting out its session, and its transactions must not carry the offsets of a
    group it is no longer in (the broker refuses those with UNKNOWN_MEMBER_ID, for good)."""
    config = kafka_config
    tasks, group = topics.name(config, topics.TASKS), f"{config.topic_prefix}-loop-test"
    producer = clients.producer(config, role="test")
    for partition in range(topics.partition_count(config, topics.TASKS)):
        producer.produce(tasks, b"input", partition=partition)
    producer.flush(10)

    leaving = TransactionalLoop(config, "leaving", tasks, group)
    staying: TransactionalLoop | None = None
    try:
        _assigned(leaving)
        deadline = time.monotonic() + 30
        read = 0
        while read < topics.partition_count(config, topics.TASKS):  # read its input, so it has positions
            assert time.monotonic() < deadline
            read += len(leaving.poll(timeout=0.2))
        leaving.begin()
        leaving.commit()

        leaving.leave()
        assert leaving.consumer.assignment() == []  # revoked at once, LeaveGroup sent

        staying = TransactionalLoop(config, "staying", tasks, group)
        started = time.monotonic()
        _assigned(staying)
        # Well under the session timeout: it did not wait for the member that left to expire.
        assert time.monotonic() - started < config.values["kafka.session_timeout_ms"] / 1000

        for _ in range(2):  # heartbeats from outside the group commit
            leaving.begin()
            sending.produce(leaving.producer, config, Event("beat").to_record())
            leaving.commit()
    finally:
        leaving.close()
        if staying is not None:
            staying.close()


def test_each_commit_is_timed_under_the_loops_role(kafka_config: Config) -> None:
    """aiflow_transaction_commit_seconds{role}: one observation per committed step, none for an aborted one."""
    from prometheus_client import REGISTRY

    config = kafka_config
    role = f"timed-{config.topic_prefix}"
    loop = TransactionalLoop(config, role, topics.name(config, topics.TASKS), f"{config.topic_prefix}-timed")
    try:
        for _ in range(3):
            loop.begin()
            sending.produce(loop.producer, config, Event("timed").to_record())
            loop.commit()
        loop.begin()
        loop.abort()
    finally:
        loop.close()
    count = REGISTRY.get_sample_value("aiflow_transaction_commit_seconds_count", {"role": role})
    total = REGISTRY.get_sample_value("aiflow_transaction_commit_seconds_sum", {"role": role})
    assert count == 3 and total is not None and total > 0
