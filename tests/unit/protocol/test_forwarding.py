"""The router's byte-level path held to the codec: the hand reader reads what the codec reads and never
accepts what the codec refuses; the inbox message written around an event's bytes is, byte for byte,
what the codec writes; inbox messages of every earlier version still read; a client's batch of events
is written as the codec writes each event."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message

from aiflow.errors import DecodeError
from aiflow.protocol import forwarding
from aiflow.protocol.codec import EVENT, INBOX_MESSAGE, MAGIC, default_codec, schema_dir
from aiflow.protocol.forwarding import EventBytes, EventWriter, Inbox, encode_routed_event, read_for_routing
from aiflow.protocol.messages import Event, InboxKind, InboxMessage
from aiflow.protocol.records import NAMESPACE_HEADER, inbox_partition, workflow_key

NOW = datetime(2026, 11, 26, 12, 0, 0, 123000, tzinfo=timezone.utc)

EVENTS = [
    Event(key="k", send_time=NOW),
    Event(key="go", value="v", namespace="ns", sender="cli", send_time=NOW, event_id=""),
    Event(key="ü€𝄞", value="ü" * 5000, namespace="näm", context={"ä": "ö", "": ""}, send_time=NOW),
    Event(key="x" * 70, value="", workflow="wf", execution_id="e" * 32, task="t", try_number=3,
          context={"aiflow.task_namespace": "ns"}, send_time=NOW),
    Event(key="k", try_number=-(1 << 31), context={f"c{i}": str(i) * i for i in range(100)},
          send_time=datetime(1970, 1, 1, tzinfo=timezone.utc)),
    Event(key="k", try_number=(1 << 31) - 1, value="v" * 70_000, send_time=datetime(6000, 1, 1, tzinfo=timezone.utc)),
]


def _codec_fields(data: bytes) -> tuple[object, ...]:
    _, record = default_codec().decode(data, expected=EVENT)
    return (record["key"], record["namespace"], record["workflow"], record["execution_id"], record["task"],
            record["context"])


def test_the_hand_reader_follows_the_current_event_schema() -> None:
    schema = json.loads((schema_dir() / "aiflow.Event.avsc").read_text())
    assert forwarding.READ_FIELDS == tuple((f["name"], f["type"]) for f in schema["fields"]), \
        "Event.avsc changed: make forwarding.read_for_routing read the new fields, then update READ_FIELDS"


@pytest.mark.parametrize("event", EVENTS, ids=range(len(EVENTS)))
def test_the_hand_reader_reads_every_event_as_the_codec_does(event: Event) -> None:
    data = event.encode()
    assert read_for_routing(data) == _codec_fields(data)


def test_the_hand_reader_never_accepts_what_the_codec_refuses_or_reads_it_differently() -> None:
    rng = random.Random(16)
    accepted = refused = 0
    for _ in range(20_000):
        data = bytearray(rng.choice(EVENTS[:5]).encode())
        for _ in range(rng.randint(1, 3)):
            if len(data) <= 11:
                break
            where = rng.randrange(10, len(data))
            action = rng.random()
            if action < 0.5:
                data[where] = rng.randrange(256)
            elif action < 0.7:
                del data[where:where + rng.randint(1, 4)]
            elif action < 0.9:
                data[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            else:
                del data[where:]
        fields = read_for_routing(bytes(data))
        try:
            expected = _codec_fields(bytes(data))
        except DecodeError:
            assert fields is None, bytes(data).hex()
            refused += 1
            continue
        if fields is not None:
            assert fields == expected, bytes(data).hex()
            accepted += 1
    assert accepted > 1000 and refused > 1000  # both sides were exercised


def test_what_the_hand_reader_leaves_to_the_codec_is_still_read() -> None:
    event = Event(key="k", workflow="wf", send_time=NOW)
    data = event.encode()
    at = data.index(b"\x02\x04wf")  # the workflow union's branch 1, then "wf"
    other_branch = data[:at] + b"\x01" + data[at + 1:]  # branch -1: fastavro takes the last one, the string
    assert read_for_routing(other_branch) is None
    assert _codec_fields(other_branch)[2] == "wf"
    msg = Message(topic="t.events", partition=0, offset=1, key=b"k", value=other_branch,
                  timestamp=(TIMESTAMP_LOG_APPEND_TIME, 1))
    assert EventBytes.from_record(msg) == (other_branch, "k", "default", "wf", None, None, {})
    before_1970 = Event(key="k", send_time=datetime(1969, 12, 31, tzinfo=timezone.utc)).encode()
    assert read_for_routing(before_1970) is None and _codec_fields(before_1970)[0] == "k"


def test_an_event_of_another_schema_version_is_left_to_the_codec() -> None:
    current = json.loads((schema_dir() / "aiflow.Event.avsc").read_text())
    older = dict(current, fields=[f for f in current["fields"] if f["name"] != "task"])
    record = {k: v for k, v in Event(key="k", send_time=NOW).to_avro().items() if k != "task"}
    data = default_codec().encode_with(older, record)
    assert read_for_routing(data) is None
    msg = Message(topic="t.events", partition=0, offset=1, key=b"k", value=data,
                  timestamp=(TIMESTAMP_LOG_APPEND_TIME, 1))
    assert EventBytes.from_record(msg).key == "k"


def test_a_plain_event_is_forwarded_as_the_event_the_router_makes_of_it() -> None:
    msg = Message(topic="t.events", partition=2, offset=9, key=b"deploy", value=b"v1.2",
                  headers=[(NAMESPACE_HEADER, b"ops")], timestamp=(TIMESTAMP_LOG_APPEND_TIME, 1))
    forwarded = EventBytes.from_record(msg)
    assert (forwarded.key, forwarded.namespace, forwarded.workflow) == ("deploy", "ops", None)
    event = Event.decode(forwarded.data)
    assert (event.key, event.value, event.namespace, event.event_id) == ("deploy", "v1.2", "ops", "t.events-2-9")


# -- writing -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shared", EVENTS, ids=range(len(EVENTS)))
def test_a_batch_writer_writes_each_event_as_the_codec_does(shared: Event) -> None:
    writer = EventWriter(shared)  # the fields the batch shares are this event's
    for event_id, key, value in [("ab" * 16, "k", None), ("", "ü€𝄞" * 50, ""), ("x", "sensor-7", "v" * 20_000),
                                 (shared.event_id, shared.key, shared.value)]:
        expected = Event(key=key, value=value, namespace=shared.namespace, sender=shared.sender,
                         workflow=shared.workflow, execution_id=shared.execution_id, task=shared.task,
                         try_number=shared.try_number, context=shared.context, event_id=event_id,
                         send_time=shared.send_time)
        assert writer.encode(event_id, key, value) == expected.encode()


def test_a_batch_writer_refuses_text_that_is_not_utf8_as_the_codec_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        EventWriter(EVENTS[0]).encode("id", "bad \udc80 key", None)


@pytest.mark.parametrize("execution_id", [None, "", "e1"])
@pytest.mark.parametrize("event", [EVENTS[0], EVENTS[2], EVENTS[5]], ids=["small", "unicode", "large"])
def test_the_routed_inbox_message_is_what_the_codec_writes(event: Event, execution_id: str | None) -> None:
    data = event.encode()
    inbox = Inbox.of("näm", "wörkflow")
    routed = encode_routed_event(inbox, data, "p.events/2/123456789", execution_id, "ab" * 16, NOW)
    message = InboxMessage("näm", "wörkflow", InboxKind.EVENT, event=Event.decode(data),
                           source="p.events/2/123456789", execution_id=execution_id, message_id="ab" * 16,
                           create_time=NOW)
    assert routed == message.encode()
    assert InboxMessage.decode(routed) == message


def test_a_routed_inbox_message_carries_the_event_bytes_unchanged_and_a_new_id_and_time() -> None:
    data = EVENTS[3].encode()
    first = encode_routed_event(Inbox.of("ns", "wf"), data, "s", None)
    second = encode_routed_event(Inbox.of("ns", "wf"), data, "s", None)
    _, record = default_codec().decode(first, expected=INBOX_MESSAGE)
    assert record["event_bytes"] == data and record["event"] is None
    assert abs(record["create_time"] - datetime.now(timezone.utc)) < timedelta(seconds=5)
    assert InboxMessage.decode(first).message_id != InboxMessage.decode(second).message_id


def test_an_inbox_is_keyed_and_partitioned_as_every_other_inbox_record() -> None:
    for namespace, workflow in (("default", "w1"), ("näm", "wörk")):
        inbox = Inbox.of(namespace, workflow)
        key = workflow_key(namespace, workflow)
        assert inbox.key == key.encode()
        assert all(inbox.hash % n == inbox_partition(key, n) for n in (1, 3, 12))


# -- versions of the inbox message -------------------------------------------------------------
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_an_inbox_event_written_before_v3_reads_with_its_nested_event(version: str) -> None:
    older = json.loads((schema_dir() / "history" / f"aiflow.InboxMessage.{version}.avsc").read_text())
    event = EVENTS[3]
    message = InboxMessage("ns", "wf", InboxKind.EVENT, event=Event.decode(event.encode()), source="p.events/0/1",
                           execution_id=event.execution_id, create_time=NOW)
    record = {k: v for k, v in message.to_avro().items() if k != "event_bytes"}
    data = default_codec().encode_with(older, {**record, "event": event.to_avro()})
    assert data[:2] == MAGIC and data[2:10] != default_codec().fingerprint_of(INBOX_MESSAGE)
    assert InboxMessage.decode(data) == message


def test_an_inbox_event_whose_event_bytes_are_junk_is_refused_with_the_reason() -> None:
    message = InboxMessage.for_event("ns", "wf", EVENTS[0], "p.events/0/1")
    record = {**message.to_avro(), "event_bytes": b"\xc3\x01" + bytes(8) + b"junk"}
    with pytest.raises(DecodeError, match="its event cannot be read: unknown writer schema"):
        InboxMessage.decode(default_codec().encode(INBOX_MESSAGE, record))
