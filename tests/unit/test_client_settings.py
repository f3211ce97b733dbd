"""The settings aiflow gives its Kafka clients (built, never connected: no broker needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiflow.config import Config
from aiflow.kafka import clients


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    settings: list[dict[str, Any]] = []
    monkeypatch.setattr(clients, "Producer", lambda conf: settings.append(conf))
    return settings


def test_transactional_producers_retry_a_busy_coordinator_after_1_ms(tmp_path: Path,
                                                                     made: list[dict[str, Any]]) -> None:
    # A transaction begun just after the last one committed gets CONCURRENT_TRANSACTIONS while the
    # coordinator writes the last one's markers: at librdkafka's default 100 ms back-off, one step in
    # ten of event -> callable waited 100 ms (benchmarks/README.md).
    config = Config.load(home=tmp_path, environ={})
    clients.producer(config, role="router", transactional_id="t-router-1")
    clients.producer(config, role="events")
    transactional, plain = made
    assert transactional["retry.backoff.ms"] == 1 and transactional["retry.backoff.max.ms"] == 100
    # librdkafka's defaults where there are no back-to-back transactions
    assert "retry.backoff.ms" not in plain and "retry.backoff.max.ms" not in plain


def test_kafka_properties_may_set_the_back_off(tmp_path: Path, made: list[dict[str, Any]]) -> None:
    config = Config.load(home=tmp_path, environ={"AIFLOW_KAFKA_PROPERTY_RETRY_BACKOFF_MS": "50"})
    clients.producer(config, role="router", transactional_id="t-router-1")
    assert made[0]["retry.backoff.ms"] == "50" and "retry.backoff.max.ms" not in made[0]  # not capped at 100


@pytest.fixture
def consumers(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    settings: list[dict[str, Any]] = []
    monkeypatch.setattr(clients, "Consumer", lambda conf: settings.append(conf))
    return settings


def test_consumers_that_follow_wait_long_between_idle_fetches_and_readers_short(
        tmp_path: Path, consumers: list[dict[str, Any]]) -> None:
    # Each idle consumer asks the broker anew when its fetch wait runs out: at 50 ms the broker's idle
    # CPU was mostly answering the definition followers' fetches (benchmarks/README.md).
    config = Config.load(home=tmp_path, environ={})
    clients.consumer(config, role="scheduler", group_id="g", follow=True)
    clients.consumer(config, role="worker-definitions", follow=True)
    clients.consumer(config, role="event-reader")
    in_group, alone, reading = consumers
    # A group member is handed partitions by rebalances, fetched only once its waiting fetch returns.
    assert in_group["fetch.wait.max.ms"] == clients.FOLLOW_FETCH_WAIT_MS == 500
    # Assigned once for good, nothing it is given waits on its fetch.
    assert alone["fetch.wait.max.ms"] == clients.LISTEN_FETCH_WAIT_MS == 5000
    assert reading["fetch.wait.max.ms"] == clients.READ_FETCH_WAIT_MS == 50


def test_kafka_properties_may_set_every_consumers_fetch_wait(tmp_path: Path, consumers: list[dict[str, Any]]) -> None:
    config = Config.load(home=tmp_path, environ={"AIFLOW_KAFKA_PROPERTY_FETCH_WAIT_MAX_MS": "100"})
    clients.consumer(config, role="scheduler", group_id="g", follow=True)
    clients.consumer(config, role="event-reader")
    assert [c["fetch.wait.max.ms"] for c in consumers] == ["100", "100"]
