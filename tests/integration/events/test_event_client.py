"""The event client against the real broker: durability, listeners, history, namespaces, bad records."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from ai_flow.notification.notification_client import AIFlowNotificationClient, ListenerProcessor
from aiflow.config import Config
from aiflow.events import Event, EventClient, TaskContext
from aiflow.kafka import clients, topics
from tests.conftest import IN_CI, produce_raw, read_topic


class Collector(ListenerProcessor):
    def __init__(self) -> None:
        self.events: queue.Queue[Event] = queue.Queue()

    def process(self, events: list[Event]) -> None:
        for e in events:
            self.events.put(e)

    def take(self, n: int, timeout: float = 20.0) -> list[Event]:
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            got.append(self.events.get(timeout=max(0.01, deadline - time.monotonic())))
        return got

    def nothing_more(self, wait: float = 1.5) -> bool:
        try:
            extra = self.events.get(timeout=wait)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected event {extra}")


def test_send_returns_the_stored_event_with_offset_and_broker_time(kafka_config: Config) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    with EventClient(kafka_config) as client:
        first = client.send_event("model_deployed", "/models/1")
        second = client.send_event("model_deployed", "/models/2")
    assert first.offset is not None and second.offset == first.offset + 1  # one key, one partition
    assert first.create_time is not None and first.create_time >= before
    stored = read_topic(kafka_config, topics.EVENTS)
    assert [m.key() for m in stored] == [b"model_deployed", b"model_deployed"]


def test_listener_gets_only_its_keys_from_now_on(kafka_config: Config) -> None:
    with EventClient(kafka_config) as client:
        client.send_event("model_deployed", "before the listener")
        collector = Collector()
        client.register_listener(collector, ["model_deployed"])
        client.send_event("data_prepared")
        client.send_event("model_deployed", "/models/7")
        got = collector.take(1)
        assert [(e.key, e.value) for e in got] == [("model_deployed", "/models/7")]
        collector.nothing_more()


def test_listener_from_a_time_and_from_an_offset(kafka_config: Config) -> None:
    with EventClient(kafka_config) as client:
        client.send_event("k", "old")
        time.sleep(0.05)
        middle = datetime.now(timezone.utc)
        time.sleep(0.05)
        newer = client.send_event("k", "new")

        by_time = Collector()
        client.register_listener(by_time, ["k"], begin_time=middle)
        assert [e.value for e in by_time.take(1)] == ["new"]
        by_time.nothing_more(0.5)

        by_offset = Collector()
        assert newer.partition is not None
        client.register_listener(by_offset, ["k"], begin_offset={newer.partition: 0})
        assert [e.value for e in by_offset.take(2)] == ["old", "new"]


def test_unregistered_listener_hears_nothing_more(kafka_config: Config) -> None:
    with EventClient(kafka_config) as client:
        collector = Collector()
        listener_id = client.register_listener(collector, ["k"])
        client.send_event("k", "1")
        collector.take(1)
        client.unregister_listener(listener_id)
        client.send_event("k", "2")
        collector.nothing_more()


def test_a_raising_processor_does_not_stop_its_listener(kafka_config: Config) -> None:
    class Flaky(Collector):
        calls = 0

        def process(self, events: list[Event]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")
            super().process(events)

    with EventClient(kafka_config) as client:
        flaky = Flaky()
        client.register_listener(flaky, ["k"])
        client.send_event("k", "lost to the exception")
        deadline = time.monotonic() + 10
        while flaky.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        client.send_event("k", "after")
        assert flaky.take(1)[0].value == "after"


def test_namespaces_are_isolated(kafka_config: Config) -> None:
    with EventClient(kafka_config) as default, EventClient(kafka_config, namespace="team-b") as team_b:
        in_default, in_b = Collector(), Collector()
        default.register_listener(in_default, ["shared_key"])
        team_b.register_listener(in_b, ["shared_key"])
        team_b.send_event("shared_key", "for b")
        default.send_event("shared_key", "for default")
        assert [e.value for e in in_b.take(1)] == ["for b"]
        assert [e.value for e in in_default.take(1)] == ["for default"]
        in_b.nothing_more(0.5)
        in_default.nothing_more(0.5)
        assert [e.value for e in team_b.list_events(key="shared_key")] == ["for b"]


def test_list_events_filters_by_key_time_and_limit(kafka_config: Config) -> None:
    with EventClient(kafka_config) as client:
        client.send_events([("a", "1"), ("b", "x"), ("a", "2")])
        time.sleep(0.05)
        cut = datetime.now(timezone.utc)
        time.sleep(0.05)
        client.send_event("a", "3")
        assert [e.value for e in client.list_events(key="a")] == ["1", "2", "3"]
        assert [e.value for e in client.list_events(key="a", since=cut)] == ["3"]
        assert [e.value for e in client.list_events(key="a", until=cut)] == ["1", "2"]
        assert [e.value for e in client.list_events(key="a", limit=2)] == ["2", "3"]
        assert len(client.list_events()) == 4
        assert client.list_events(namespace="elsewhere") == []


def test_inside_a_task_events_carry_the_execution_and_ignore_the_server_address(
        kafka_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    context = TaskContext(namespace="ml", workflow="online_machine_learning", execution_id="exec-1",
                          task="deploying", try_number=2)
    for name, value in context.to_env().items():
        monkeypatch.setenv(name, value)
    client = AIFlowNotificationClient("localhost:50052", config=kafka_config)
    try:
        sent = client.send_event(key="model_deployed", value="/m/1")
    finally:
        client.close()
    assert (sent.namespace, sent.execution_id, sent.workflow, sent.task, sent.try_number) == \
        ("ml", "exec-1", "online_machine_learning", "deploying", 2)
    monkeypatch.delenv("AIFLOW_EXECUTION_ID")
    with EventClient(kafka_config, namespace="ml") as reader:
        [stored] = reader.list_events(key="model_deployed")
    assert stored.execution_id == "exec-1" and stored.sender == "online_machine_learning/exec-1/deploying/2"


def test_plain_kafka_producer_event_reaches_a_listener(kafka_config: Config) -> None:
    with EventClient(kafka_config) as client:
        collector = Collector()
        client.register_listener(collector, ["data_prepared"])
        producer = clients.producer(kafka_config)
        producer.produce(topics.name(kafka_config, topics.EVENTS), key=b"data_prepared", value=b"from elsewhere")
        producer.flush(10)
        [event] = collector.take(1)
        assert (event.value, event.namespace, event.plain) == ("from elsewhere", "default", True)


def test_kcat_key_only_event_reaches_default_listener_not_another_namespace(kafka_config: Config) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        if IN_CI:
            pytest.fail("kcat is not installed; .ci/run installs it from Debian's package")
        pytest.skip("kcat is not installed (apt-get install kcat)")
    with EventClient(kafka_config) as default, EventClient(kafka_config, namespace="other") as other:
        in_default, in_other = Collector(), Collector()
        default.register_listener(in_default, ["data_prepared"])
        other.register_listener(in_other, ["data_prepared"])
        # kcat skips empty lines, so a key-only record is written as "key:" with ':' as key delimiter.
        subprocess.run([kcat, "-P", "-b", kafka_config.bootstrap, "-t", topics.name(kafka_config, topics.EVENTS),
                        "-K:"], input=b"data_prepared:\n", check=True, timeout=30)
        [event] = in_default.take(1)
        assert event.key == "data_prepared" and event.value is None and event.plain
        in_other.nothing_more()


def test_readers_pass_over_junk_and_never_write_dead_letters(kafka_config: Config) -> None:
    """Listeners and `list_events` read only: the router, which owns the events topic, dead-letters junk."""
    junk = b"\xc3\x01" + os.urandom(8) + b"\xff\xfe\xfa"
    with EventClient(kafka_config) as client:
        collector = Collector()
        client.register_listener(collector, ["k"])
        produce_raw(kafka_config, [(topics.EVENTS, b"k", junk), (topics.EVENTS, b"k", b"\xff\xfe not utf-8")])
        client.send_event("k", "still heard")
        assert [e.value for e in collector.take(1)] == ["still heard"]
        assert [e.value for e in client.list_events(key="k")] == ["still heard"]
        assert [e.value for e in client.list_events(key="k")] == ["still heard"]
    assert read_topic(kafka_config, topics.DLQ, timeout=5) == []


def test_close_stops_listener_threads(kafka_config: Config) -> None:
    client = EventClient(kafka_config)
    client.register_listener(Collector(), ["k"])
    client.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("aiflow-listener")]
    client.close()  # twice is fine
