"""The consumer lag collector against a real broker: it reads each group's lag, and keeps its clients
from one reading to the next (a service reads it every 10 s)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from aiflow import metrics
from aiflow.config import Config
from aiflow.kafka import clients, topics


def _inbox_lag(config: Config) -> float:
    inbox = topics.name(config, topics.INBOX)
    return sum(REGISTRY.get_sample_value("aiflow_consumer_lag", {
        "group": f"{config.topic_prefix}-scheduler", "topic": inbox, "partition": str(p)}) or 0.0
        for p in range(topics.partition_count(config, topics.INBOX)))


def test_the_lag_collector_reads_every_groups_lag_with_the_same_clients_each_time(
        kafka_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    config = kafka_config
    made: list[str] = []
    consumer = clients.consumer

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs.get("group_id", ""))
        return consumer(*args, **kwargs)

    monkeypatch.setattr(clients, "consumer", counted)
    producer = clients.producer(config, role="test")
    inbox = topics.name(config, topics.INBOX)

    collector = metrics.LagCollector(config)
    try:
        deadline = time.monotonic() + 30
        while not _read_once(collector):  # a broker just started may not yet know the groups' coordinator
            assert time.monotonic() < deadline, "the lag was never read"
            time.sleep(0.2)
        made.clear()
        for more, lag in ((3, 3), (2, 5)):  # the scheduler's group has committed nothing: its lag is the whole inbox
            for _ in range(more):
                producer.produce(inbox, key=b"default/wf", value=b"x", partition=0)
            producer.flush(10)
            assert _read_once(collector)
            assert _inbox_lag(config) == lag
        assert made == []  # the readings after the first asked the clients it made
    finally:
        collector.close()


def _read_once(collector: metrics.LagCollector) -> bool:
    before = REGISTRY.get_sample_value("aiflow_consumer_lag_updated_timestamp_seconds")
    time.sleep(0.01)  # the timestamp of a new reading differs from the last one's
    collector.collect()
    return REGISTRY.get_sample_value("aiflow_consumer_lag_updated_timestamp_seconds") != before
