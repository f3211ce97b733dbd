"""The wire contract without a broker: typed messages round-trip, junk of every kind on every topic
becomes exactly one dead letter with its reason, and limits are enforced where records are made."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message

from aiflow.errors import EventError, RecordError
from aiflow.protocol import deadletter, topics
from aiflow.protocol.deadletter import dead_letter, decode_or_dead_letter
from aiflow.protocol.messages import (
    Command,
    ControlCommand,
    Event,
    InboxKind,
    InboxMessage,
    StateRecord,
    TaskCommand,
    WorkflowDefinition,
    WorkflowDeleted,
    read_workflow_record,
)
from aiflow.protocol.records import MAX_DEAD_LETTER_BYTES, MAX_EVENT_BYTES, Record, header
from tests.unit.protocol.junk import KINDS, NOW, TOPICS, good, junk

READERS: dict[str, Callable[[Any], object]] = {
    topics.EVENTS: Event.from_record, topics.INBOX: InboxMessage.from_record, topics.TASKS: TaskCommand.from_record,
    topics.CONTROL: ControlCommand.from_record, topics.STATE: StateRecord.from_record,
    topics.WORKFLOWS: read_workflow_record,
}


def consumed(role: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None,
             offset: int = 7) -> Message:
    return Message(topic=f"aiflow.{role}", partition=1, offset=offset, key=key, value=value, headers=headers,
                   timestamp=(TIMESTAMP_LOG_APPEND_TIME, 1_764_158_400_000))


@pytest.mark.parametrize("role", TOPICS)
def test_a_good_record_of_each_topic_decodes_to_its_typed_message(role: str) -> None:
    key, value = good(role, "marker")
    decoded = READERS[role](consumed(role, key, value))
    assert "marker" in repr(decoded)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", TOPICS)
def test_junk_is_dead_lettered_once_by_the_owner_with_its_reason(role: str, kind: str) -> None:
    key, value = junk(role, kind)
    dead: list[Record] = []
    assert decode_or_dead_letter(consumed(role, key, value), READERS[role], "owner", dead) is None
    [letter] = dead
    assert letter.role == topics.DLQ and letter.key == key and letter.value == value
    headers = dict(letter.headers)
    assert headers[deadletter.SOURCE] == f"aiflow.{role}/1/7".encode()
    assert headers[deadletter.REPORTER] == b"owner"
    assert headers[deadletter.REASON]


@pytest.mark.parametrize("role", TOPICS)
def test_a_reader_that_does_not_own_the_topic_skips_junk_and_writes_nothing(role: str) -> None:
    key, value = junk(role, "random-bytes")
    assert decode_or_dead_letter(consumed(role, key, value), READERS[role], "reader", None) is None


def test_reasons_name_what_is_wrong() -> None:
    def reason(role: str, kind: str) -> str:
        dead: list[Record] = []
        decode_or_dead_letter(consumed(role, *junk(role, kind)), READERS[role], "owner", dead)
        return dict(dead[0].headers)[deadletter.REASON].decode()

    assert "over the limit of 1,000,000 bytes" in reason(topics.INBOX, "oversized")
    assert "not UTF-8" in reason(topics.TASKS, "non-utf8-key")
    assert "expected aiflow.InboxMessage, got aiflow.ControlCommand" in reason(topics.INBOX, "wrong-schema")
    assert "nested too deeply" in reason(topics.STATE, "nested-json")
    assert "nested too deeply" in reason(topics.WORKFLOWS, "nested-json")
    assert "not UTF-8" in reason(topics.EVENTS, "lone-surrogate")
    assert "corrupt" in reason(topics.CONTROL, "lone-surrogate")


def test_a_record_whose_key_contradicts_its_value_is_junk() -> None:
    _, value = good(topics.TASKS)
    dead: list[Record] = []
    assert decode_or_dead_letter(consumed(topics.TASKS, b"another-execution", value), TaskCommand.from_record,
                                 "worker", dead) is None
    assert b"does not match" in dict(dead[0].headers)[deadletter.REASON]


def test_typed_messages_round_trip() -> None:
    event = Event(key="k", value="v", namespace="ns", context={"a": "b"}, send_time=NOW)
    inbox = InboxMessage.for_command("ns", "wf", Command.STOP_TASK, "e1", "t")
    command = TaskCommand("ns", "wf", "e1", "t", 3, "file:///s.zip", "a" * 64, "wf.py", 5.0)
    report = command.report("RUNNING", worker="w1", pid=42)
    control = ControlCommand("KILL", "e1", "t", 3, "heartbeat")
    state = StateRecord("EXECUTION", "e1", "ns", "wf", 4, '{"id": "e1"}')
    definition = WorkflowDefinition("ns", "wf", 2, "file:///s.zip", "a" * 64, "wf.py", rule_keys=(("ns", "k"),))
    for message in (inbox, command, report, control, state, definition):
        record = message.to_record()
        back = type(message).from_record(consumed(record.role, record.key_bytes(), record.value))
        assert back == message
    record = event.to_record()
    back_event = Event.from_record(consumed(topics.EVENTS, record.key_bytes(), record.value, list(record.headers)))
    assert (back_event.key, back_event.value, back_event.namespace, dict(back_event.context)) == ("k", "v", "ns",
                                                                                                  {"a": "b"})
    assert (back_event.partition, back_event.offset) == (1, 7)
    assert report.kind is InboxKind.TASK_STATUS and report.report is not None and report.report.pid == 42
    assert command.report(None).kind is InboxKind.HEARTBEAT
    assert control.matches("e1", "t", 3) and not control.matches("e1", "t", 2)


def test_a_tombstone_on_the_workflows_topic_is_a_deletion() -> None:
    assert read_workflow_record(consumed(topics.WORKFLOWS, b"ns/wf", None)) == WorkflowDeleted("ns", "wf")


def test_an_event_over_the_limit_is_refused_naming_the_limit() -> None:
    with pytest.raises(EventError, match=f"over the limit of {MAX_EVENT_BYTES:,} bytes"):
        Event(key="big", value="x" * MAX_EVENT_BYTES).to_record()


@pytest.mark.parametrize("event", [Event(key="k\ud800"), Event(key="k", value="v\udc80"),
                                   Event(key="k", context={"a": "\ud800"})])
def test_an_event_with_text_that_cannot_be_encoded_is_refused(event: Event) -> None:
    with pytest.raises(EventError, match="cannot be encoded"):
        event.to_record()


def test_a_record_over_its_topic_limit_is_a_permanent_error() -> None:
    with pytest.raises(RecordError, match="over the limit"):
        Record(topics.INBOX, "ns/wf", b"x" * 1_000_001).check_size()
    Record(topics.DLQ, "k", b"x" * 1_048_588).check_size()  # a record at the broker's limit fits as a dead letter


def test_a_dead_letter_keeps_the_record_and_cuts_only_what_no_topic_could_hold() -> None:
    msg = consumed(topics.EVENTS, b"\xff", b"v", [("trace", b"1")])
    letter = dead_letter(msg, "why", "router")
    assert (letter.key, letter.value) == (b"\xff", b"v")
    assert header(consumed(topics.DLQ, letter.key_bytes(), letter.value, list(letter.headers)),  # type: ignore[arg-type]
                  "trace") == "1"
    huge = dead_letter(consumed(topics.EVENTS, b"k", b"x" * (MAX_DEAD_LETTER_BYTES + 10)), "why", "router")
    assert huge.value is not None and len(huge.value) == MAX_DEAD_LETTER_BYTES
    assert dict(huge.headers)[deadletter.TRUNCATED] == str(MAX_DEAD_LETTER_BYTES + 10).encode()
    huge.check_size()


def test_the_pure_core_imports_without_confluent_kafka() -> None:
    code = (
        "import sys\n"
        "sys.modules['confluent_kafka'] = None  # any import of it fails\n"
        "import aiflow, aiflow.sdk, aiflow.protocol, aiflow.scheduler.core, aiflow.testing\n"
        "from aiflow.testing import WorkflowTest\n"
        "from aiflow import Workflow, BashOperator, Event\n"
        "assert not any(m.startswith('confluent_kafka') and sys.modules[m] for m in sys.modules)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_dead_letter_of_a_record_with_a_huge_key_and_headers_still_fits() -> None:
    msg = consumed(topics.EVENTS, b"k" * 200_000, b"x" * (MAX_DEAD_LETTER_BYTES + 1), [("h", b"v" * 100_000)])
    letter = dead_letter(msg, "why", "bridge")
    letter.check_size()
    headers = dict(letter.headers)
    assert headers[deadletter.TRUNCATED_KEY] == b"200000" and headers[deadletter.TRUNCATED_HEADERS] == b"1"


def test_the_tries_of_an_execution_record_that_wait_for_a_worker() -> None:
    from aiflow.scheduler import core

    ex = core.Execution("e1", "ns", "wf", core.Snapshot(1, "file:///s.zip", "a" * 64, "wf.py"), "MANUAL", "test",
                        tries={"a": [core.TaskTry("a", 1, "FAILED", "c"), core.TaskTry("a", 2, "QUEUED", "c")],
                               "b": [core.TaskTry("b", 1, "RUNNING", "c")]})
    record = StateRecord("EXECUTION", "e1", "ns", "wf", 3, json.dumps(ex.to_dict()))
    assert record.queued_tries() == {("e1", "a", 2)}


def test_a_definition_lists_the_snapshots_that_may_run_and_older_records_their_latest_alone() -> None:
    from aiflow.protocol.messages import WorkflowDefinition

    old, new = ("file:///b/1.zip", "1" * 64, "w/w.py"), ("file:///b/2.zip", "2" * 64, "w/w.py")
    listed = WorkflowDefinition("default", "w", 2, *new, snapshots=((1, *old), (2, *new)))
    decoded = WorkflowDefinition.decode(listed.encode())
    assert decoded.announces(*old) and decoded.announces(*new, version=2)
    assert not decoded.announces(*old, version=2)  # the version must match too
    assert not decoded.announces("file:///b/3.zip", "3" * 64, "w/w.py")
    assert not decoded.announces(old[0], old[1], "other.py")
    written_before = WorkflowDefinition("default", "w", 2, *new)  # no list: its latest snapshot alone
    assert written_before.announces(*new) and not written_before.announces(*old)


# -- worker placement ----------------------------------------------------------------------------
def test_a_start_goes_to_the_tasks_topic_of_its_queue_and_names_it() -> None:
    default = TaskCommand("default", "w", "e1", "t", 1, "file:///s.zip", "ab" * 32, "w.py")
    gpu = TaskCommand("default", "w", "e1", "t", 1, "file:///s.zip", "ab" * 32, "w.py", queue="gpu")
    assert default.to_record().role == topics.TASKS == "tasks"  # the default queue keeps the topic of old
    assert gpu.to_record().role == topics.tasks_role("gpu") == "tasks.gpu"
    assert TaskCommand.decode(gpu.encode()).queue == "gpu"
    assert topics.queue_of_role("tasks.gpu") == "gpu" and topics.queue_of_role("tasks") == "default"
    assert topics.queue_of_role("inbox") is None and topics.queue_of_role("tasks.") is None


def test_a_task_command_written_before_queues_reads_as_one_of_the_default_queue() -> None:
    from aiflow.protocol.codec import TASK_COMMAND, default_codec, schema_dir

    v1 = json.loads((schema_dir() / "history" / "aiflow.TaskCommand.v1.avsc").read_text())
    command = TaskCommand("default", "w", "e1", "t", 2, "file:///s.zip", "ab" * 32, "w.py", 30.0)
    record = {k: v for k, v in command.to_avro().items() if k != "queue"}
    data = default_codec().encode_with(v1, record)
    assert data[2:10] != default_codec().fingerprint_of(TASK_COMMAND)  # really the old writer schema
    assert TaskCommand.decode(data) == command  # the default queue


def test_a_beacon_says_which_queues_its_worker_serves_and_an_old_one_the_default() -> None:
    beacon = InboxMessage.decode(InboxMessage.for_worker("w1", 2, ("gpu", "default")).encode())
    assert beacon.queues == ("gpu", "default") and beacon.free_slots == 2
    old = InboxMessage("", "w0", InboxKind.WORKER, args={"free_slots": "1"})  # from a worker before queues
    assert old.queues == ("default",)
