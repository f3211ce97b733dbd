import json
from datetime import datetime, timezone

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message

from aiflow.errors import DecodeError, RecordError
from aiflow.protocol.codec import EVENT, INBOX_MESSAGE, MAGIC, Codec, schema_dir, schema_fingerprint
from aiflow.protocol.messages import Event

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)

SAMPLES = {
    "aiflow.Event": Event(key="k", value="v", send_time=NOW).to_avro(),
    "aiflow.TaskCommand": {"command_id": "c", "namespace": "default", "workflow": "w", "execution_id": "e",
                           "task": "t", "try_number": 1, "snapshot_uri": "file:///s.zip", "snapshot_sha256": "ab",
                           "workflow_file": "w.py", "timeout_seconds": None, "create_time": NOW, "queue": "gpu"},
    "aiflow.ControlCommand": {"command_id": "c", "kind": "STOP", "execution_id": "e", "task": "t",
                              "try_number": 2, "reason": "asked", "create_time": NOW},
    "aiflow.TaskStatusReport": {"execution_id": "e", "task": "t", "try_number": 1, "status": "RUNNING",
                                "message": "", "worker": "w1", "pid": 42},
    "aiflow.InboxMessage": {"message_id": "m", "namespace": "default", "workflow": "w", "kind": "EVENT",
                            "event": None, "source": "aiflow.events/0/1",
                            "report": None, "command": None, "execution_id": None, "task": None, "args": {},
                            "create_time": NOW, "event_bytes": Event(key="k", send_time=NOW).encode()},
    "aiflow.WorkflowDefinition": {"namespace": "default", "workflow": "w", "version": 3, "snapshot_uri": "u",
                                  "snapshot_sha256": "s", "workflow_file": "w.py", "enabled": True,
                                  "rule_keys": [{"namespace": "default", "key": "data_prepared"}],
                                  "trigger_keys": [], "definition": "{}", "triggers": "[]", "schedules": "[]",
                                  "snapshots": [{"version": 3, "uri": "u", "sha256": "s", "workflow_file": "w.py"}],
                                  "update_time": NOW},
    "aiflow.StateRecord": {"entity": "EXECUTION", "entity_id": "e", "namespace": "default", "workflow": "w",
                           "version": 7, "body": "{}", "update_time": NOW},
    "aiflow.LogChunk": {"namespace": "default", "workflow": "w", "execution_id": "e", "task": "t", "try_number": 1,
                        "position": 4096, "data": b"epoch 1 loss 0.25\n\xff\n", "end": False, "worker": "w1",
                        "create_time": NOW},
}


def test_every_schema_file_is_a_known_message_kind() -> None:
    files = {p.name.removesuffix(".avsc") for p in schema_dir().glob("*.avsc")}
    assert files == set(SAMPLES) == set(Codec().names())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_of_each_message_kind(name: str) -> None:
    codec = Codec()
    data = codec.encode(name, SAMPLES[name])
    assert data[:2] == MAGIC and data[2:10] == codec.fingerprint_of(name)
    decoded_name, record = codec.decode(data)
    assert decoded_name == name
    assert record == SAMPLES[name]


def test_fingerprint_follows_the_avro_specification() -> None:
    # The single-object header carries the CRC-64-AVRO fingerprint little-endian: for the schema
    # "int" that is 8f 5c 39 3f 1a d5 75 72.
    assert schema_fingerprint("int") == bytes.fromhex("8f5c393f1ad57572")


def test_a_record_written_with_an_older_schema_is_read_with_the_newer() -> None:
    current = json.loads((schema_dir() / "aiflow.Event.avsc").read_text())
    older = dict(current, fields=[f for f in current["fields"] if f["name"] not in ("context", "try_number", "task")])
    codec = Codec()
    record = {k: v for k, v in Event(key="k", value="v", send_time=NOW).to_avro().items()
              if k not in ("context", "try_number", "task")}
    data = codec.encode_with(older, record)
    assert data[2:10] != codec.fingerprint_of(EVENT)

    name, decoded = codec.decode(data)
    assert name == EVENT
    assert decoded["key"] == "k" and decoded["value"] == "v"
    assert decoded["context"] == {} and decoded["task"] is None and decoded["try_number"] is None


def test_history_folder_schemas_are_known_writers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for p in schema_dir().glob("*.avsc"):
        (tmp_path / p.name).write_text(p.read_text())
    current = json.loads((schema_dir() / "aiflow.Event.avsc").read_text())
    older = dict(current, fields=[f for f in current["fields"] if f["name"] != "context"])
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "aiflow.Event.v0.avsc").write_text(json.dumps(older))
    writer = Codec(tmp_path)
    fp = writer.register(older)
    body = writer.encode_with(older, {k: v for k, v in SAMPLES[EVENT].items() if k != "context"})
    assert body[2:10] == fp
    reader = Codec(tmp_path)  # learns the old fingerprint from history/, not from the writer
    assert reader.decode(body)[1]["context"] == {}


def test_a_change_to_a_referenced_schema_changes_the_fingerprint_of_its_users() -> None:
    codec = Codec()
    before = codec.fingerprint_of(INBOX_MESSAGE)
    event = json.loads((schema_dir() / "aiflow.Event.avsc").read_text())
    event["fields"].append({"name": "extra", "type": "int", "default": 0})
    other = Codec()
    other.register(event, current=True)
    inbox = json.loads((schema_dir() / "aiflow.InboxMessage.avsc").read_text())
    assert other.register(inbox, current=True) != before


@pytest.mark.parametrize(("data", "reason"), [
    (b"hello", "no C3 01 marker"),
    (MAGIC + b"\x00" * 8 + b"body", "unknown writer schema fingerprint"),
])
def test_unreadable_bytes_are_decode_errors_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        Codec().decode(data)


def test_corrupt_body_and_trailing_bytes_are_decode_errors() -> None:
    codec = Codec()
    good = codec.encode(EVENT, SAMPLES[EVENT])
    with pytest.raises(DecodeError, match="corrupt"):
        codec.decode(good[:14])
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(good + b"\x00\x01")


def test_a_record_that_does_not_fit_its_schema_is_refused() -> None:
    with pytest.raises(RecordError, match="does not fit"):
        Codec().encode(EVENT, {"key": 5})


def test_decoding_another_kind_than_expected_is_refused() -> None:
    codec = Codec()
    data = codec.encode("aiflow.TaskStatusReport", SAMPLES["aiflow.TaskStatusReport"])
    with pytest.raises(DecodeError, match="expected aiflow.Event"):
        codec.decode(data, expected=EVENT)


def _record(key: bytes | None, value: bytes | None, headers=None) -> Message:  # type: ignore[no-untyped-def]
    return Message(topic="aiflow.events", partition=2, offset=9, key=key, value=value, headers=headers,
                   timestamp=(TIMESTAMP_LOG_APPEND_TIME, 1_764_072_000_000))


def test_plain_record_is_a_plain_event_in_the_default_namespace() -> None:
    event = Event.from_record(_record(b"data_prepared", b"batch 7"))
    assert (event.key, event.value, event.namespace, event.plain) == ("data_prepared", "batch 7", "default", True)
    assert (event.partition, event.offset) == (2, 9)
    assert event.create_time == datetime.fromtimestamp(1_764_072_000, tz=timezone.utc)


def test_plain_record_takes_its_namespace_from_the_header_and_empty_value_is_none() -> None:
    event = Event.from_record(_record(b"k", b"", [("aiflow.namespace", b"team-a")]))
    assert event.namespace == "team-a" and event.value is None


def test_avro_record_decodes_to_the_sent_event() -> None:
    sent = Event(key="model_deployed", value="/models/3", namespace="ml", execution_id="e1", send_time=NOW)
    event = Event.from_record(_record(b"model_deployed", sent.encode()))
    assert (event.key, event.value, event.namespace, event.execution_id, event.plain) == \
        ("model_deployed", "/models/3", "ml", "e1", False)
    assert event.event_id == sent.event_id


@pytest.mark.parametrize(("key", "value", "reason"), [
    (None, b"v", "without a record key"),
    (b"k", b"\xff\xfe\x00bad", "not UTF-8"),
])
def test_plain_records_that_are_not_events(key: bytes | None, value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        Event.from_record(_record(key, value))
