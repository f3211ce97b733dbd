"""The router on the real broker: every event reaches each listening inbox exactly once, in batches larger
than one poll, with its bytes as the events topic holds them; junk carrying aiflow's headers is
dead-lettered once, by the router, with its reason; an inbox event written by the router before v3
(the event nested, decoded and encoded again) is still applied."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

from aiflow import EventClient, ops
from aiflow.kafka import clients, sending, topics
from aiflow.kafka.readers import read_dead_letters
from aiflow.protocol.codec import INBOX_MESSAGE, default_codec, schema_dir
from aiflow.protocol.messages import Event, InboxKind, InboxMessage, WorkflowDefinition
from aiflow.protocol.records import NAMESPACE_HEADER, inbox_partition, source_of
from aiflow.scheduler.router import MAX_BATCH, Router
from tests.conftest import make_config, read_topic
from tests.integration.scheduler.conftest import System

SHA = "0" * 64


def test_each_event_reaches_each_listening_inbox_once_with_its_bytes_and_junk_is_dead_lettered_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    config = make_config(tmp_path / "home", kafka_bootstrap)
    topics.create_topics(config)
    producer = clients.producer(config, role="test")
    for workflow, key in (("w0", "k0"), ("w1", "k1"), ("both", "k0")):
        sending.produce(producer, config, WorkflowDefinition(
            "default", workflow, 1, "file:///x", SHA, "flow.py", rule_keys=(("default", key),)).to_record())
    assert producer.flush(30) == 0
    count = MAX_BATCH + 500  # more than one transaction's worth
    with EventClient(config) as client:
        client.send_events([(f"k{i % 3}", str(i)) for i in range(count // 2)])
        # Junk that looks like an aiflow event by its headers, sent between good events.
        producer.produce(topics.name(config, topics.EVENTS), key=b"k0", value=b"\xc3\x01" + bytes(8) + b"junk",
                         headers=[(NAMESPACE_HEADER, b"default")])
        assert producer.flush(30) == 0
        client.send_events([(f"k{i % 3}", str(i)) for i in range(count // 2, count)])
    stop = threading.Event()
    thread = threading.Thread(target=Router(config).run, args=(stop,), daemon=True)
    thread.start()
    try:
        expected = Counter({"default/w0": len(range(0, count, 3)), "default/both": len(range(0, count, 3)),
                            "default/w1": len(range(1, count, 3))})  # k2: nobody listens
        listening = sum(expected.values())
        deadline = time.monotonic() + 120
        while len(inbox := read_topic(config, topics.INBOX)) < listening and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # time for a second copy, which must not come
        inbox = read_topic(config, topics.INBOX)
        letters = read_dead_letters(config)
    finally:
        stop.set()
        thread.join(timeout=30)
    events = {source_of(msg): msg.value() for msg in read_topic(config, topics.EVENTS)}
    delivered = Counter()
    for msg in inbox:
        _, fields = default_codec().decode(msg.value(), expected=INBOX_MESSAGE)
        assert fields["event_bytes"] == events[fields["source"]]  # forwarded as the events topic holds it
        assert msg.partition() == inbox_partition(msg.key().decode(), topics.partition_count(config, topics.INBOX))
        delivered[(msg.key().decode(), fields["source"])] += 1
    assert len(inbox) == listening and set(delivered.values()) == {1}
    assert Counter(key for key, _ in delivered) == expected
    [letter] = letters
    assert letter.reporter == "router" and letter.reason.startswith("unknown writer schema fingerprint")


FLOW = """
from aiflow import Workflow, BashOperator, TaskAction
with Workflow(name="older"):
    BashOperator(name="keepalive", bash_command="sleep 100000")
    BashOperator(name="t", bash_command="echo ran >> ../ran.txt").action_on_event_received(TaskAction.START, "go")
"""


def test_an_inbox_event_written_before_v3_is_applied(system: System) -> None:
    system.upload(FLOW)
    execution_id = ops.start_workflow_execution("older", config=system.config, wait=60)
    v2 = json.loads((schema_dir() / "history" / "aiflow.InboxMessage.v2.avsc").read_text())
    event = Event(key="go", value="from the previous router")
    source = f"{topics.name(system.config, topics.EVENTS)}/0/0"
    message = InboxMessage("default", "older", InboxKind.EVENT, event=event, source=source)
    record = {**{k: v for k, v in message.to_avro().items() if k != "event_bytes"}, "event": event.to_avro()}
    producer = clients.producer(system.config, role="test")
    producer.produce(topics.name(system.config, topics.INBOX), key=b"default/older",
                     value=default_codec().encode_with(v2, record),
                     partition=inbox_partition("default/older", topics.partition_count(system.config, topics.INBOX)))
    assert producer.flush(30) == 0
    ran = system.tmp / "home" / "working_dir" / "older" / execution_id / "ran.txt"
    system.wait_for(lambda: ran.exists() and ran.read_text() == "ran\n", what="the task started by the v2 event")
    assert read_dead_letters(system.config) == []
