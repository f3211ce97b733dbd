"""The router's decisions without a broker: where an event goes (scoping, triggers, namespaces), that its
bytes go there unchanged, and that whatever cannot be routed becomes exactly one dead letter with its
reason — junk carrying aiflow's headers included, and whether or not anyone listens."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message
from prometheus_client import REGISTRY

from aiflow import metrics
from aiflow.config import Config
from aiflow.events.context import TASK_NAMESPACE_CONTEXT
from aiflow.protocol import deadletter, topics
from aiflow.protocol.codec import INBOX_MESSAGE, default_codec
from aiflow.protocol.messages import Event, InboxKind, InboxMessage, WorkflowDefinition
from aiflow.protocol.records import NAMESPACE_HEADER, Record, inbox_partition
from aiflow.scheduler.router import Routes

PARTITIONS = 3


@pytest.fixture
def routes(tmp_path: Path) -> Routes:
    """Workflows w1 and w2 of `default` and w1 of `ml` listen to `go` (w2 by a trigger); `ml` is isolated."""
    config = Config.load(home=tmp_path, environ={"AIFLOW_TOPIC_PREFIX": "p", "AIFLOW_WORKER_ISOLATED_NAMESPACES": "ml"})
    routes = Routes(config, lambda: PARTITIONS)
    for namespace, workflow, rules, triggers in (("default", "w1", ("go",), ()), ("default", "w2", (), ("go",)),
                                                 ("ml", "w1", ("go",), ())):
        routes.index((namespace, workflow), WorkflowDefinition(
            namespace, workflow, 1, "file:///s.zip", "0" * 64, "flow.py",
            rule_keys=tuple((namespace, k) for k in rules), trigger_keys=tuple((namespace, k) for k in triggers)))
    return routes


def _record(value: bytes | None, key: bytes | None = b"go", headers: list[tuple[str, bytes]] | None = None,
            topic: str = "p.events", offset: int = 7) -> Message:
    return Message(topic=topic, partition=1, offset=offset, key=key, value=value, headers=headers,
                   timestamp=(TIMESTAMP_LOG_APPEND_TIME, 1_764_158_400_000))


def _sent(event: Event) -> Message:
    """The record the event client writes for the event: its Avro bytes and the namespace header."""
    record = event.to_record()
    return _record(record.value, record.key_bytes(), list(record.headers))


def _inbox(records: list[Record]) -> dict[str, InboxMessage]:
    assert all(r.role == topics.INBOX for r in records)
    return {str(r.key, "utf-8"): InboxMessage.decode(r.value or b"") for r in records}


def _dead_letter(records: list[Record]) -> dict[str, bytes]:
    [letter] = records
    assert letter.role == topics.DLQ
    headers = dict(letter.headers)
    assert headers[deadletter.REPORTER] == b"router" and headers[deadletter.SOURCE] == b"p.events/1/7"
    return headers


def test_an_event_goes_to_each_workflow_of_its_namespace_listening_with_its_bytes_unchanged(routes: Routes) -> None:
    event = Event(key="go", value="v", namespace="default")
    msg = _sent(event)
    records = routes.route(msg)
    inbox = _inbox(records)
    assert sorted(inbox) == ["default/w1", "default/w2"]  # not ml/w1: another namespace
    for record in records:
        assert record.partition == inbox_partition(str(record.key, "utf-8"), PARTITIONS)
        _, fields = default_codec().decode(record.value or b"", expected=INBOX_MESSAGE)
        assert fields["event_bytes"] == msg.value() and fields["event"] is None  # forwarded, not encoded again
    message = inbox["default/w1"]
    assert (message.kind, message.source, message.execution_id) == (InboxKind.EVENT, "p.events/1/7", None)
    assert message.event == Event.decode(msg.value() or b"")


def test_an_event_from_a_task_reaches_only_its_own_workflows_rules_but_every_trigger(routes: Routes) -> None:
    from_task = Event(key="go", namespace="default", workflow="w1", execution_id="e1", task="t", try_number=1)
    inbox = _inbox(routes.route(_sent(from_task)))
    assert sorted(inbox) == ["default/w1", "default/w2"] and inbox["default/w1"].execution_id == "e1"
    from_other = Event(key="go", namespace="default", workflow="w9", execution_id="e9", task="t", try_number=1)
    assert sorted(_inbox(routes.route(_sent(from_other)))) == ["default/w2"]  # w1's rules: not its workflow


def test_a_plain_event_goes_where_its_namespace_header_says(routes: Routes) -> None:
    inbox = _inbox(routes.route(_record(b"v1.2", headers=[(NAMESPACE_HEADER, b"ml")])))
    assert list(inbox) == ["ml/w1"]
    event = inbox["ml/w1"].event
    assert event is not None and (event.key, event.value, event.namespace) == ("go", "v1.2", "ml")


def test_a_header_does_not_move_an_aiflow_event_to_another_namespace(routes: Routes) -> None:
    record = Event(key="go", namespace="default").to_record()
    lying = _record(record.value, headers=[(NAMESPACE_HEADER, b"ml")])
    assert sorted(_inbox(routes.route(lying))) == ["default/w1", "default/w2"]  # the event's own namespace


@pytest.mark.parametrize("value", [b"\xc3\x01" + bytes(8) + b"junk", Event(key="go").encode()[:-3] + b"\xff" * 3,
                                   Event(key="nobody-listens").encode()[:20]])
def test_junk_with_aiflow_headers_is_dead_lettered_once_with_its_reason(routes: Routes, value: bytes) -> None:
    records = routes.route(_record(value, headers=[(NAMESPACE_HEADER, b"default")]))
    headers = _dead_letter(records)
    assert headers[deadletter.REASON]
    assert records[0].value == value and (NAMESPACE_HEADER, b"default") in records[0].headers  # kept as received


def test_an_event_nobody_listens_to_makes_nothing(routes: Routes) -> None:
    assert routes.route(_sent(Event(key="nobody-listens"))) == []


def test_an_event_of_an_isolated_task_into_another_namespace_is_dead_lettered(routes: Routes) -> None:
    breach = Event(key="go", namespace="default", workflow="w1", execution_id="e1", task="t", try_number=1,
                   context={TASK_NAMESPACE_CONTEXT: "ml"})
    headers = _dead_letter(routes.route(_sent(breach)))
    assert b"isolated namespace 'ml' sent an event into namespace 'default'" in headers[deadletter.REASON]


def test_an_event_too_large_to_wrap_is_dead_lettered_without_failing_its_batch(routes: Routes) -> None:
    headers = _dead_letter(routes.route(_record(b"x" * 999_950)))  # a plain event under the record limit
    assert b"over the limit of 1,000,000 bytes" in headers[deadletter.REASON]


def test_a_deleted_or_disabled_workflow_gets_nothing(routes: Routes) -> None:
    routes.index(("default", "w2"), None)
    routes.index(("default", "w1"), WorkflowDefinition("default", "w1", 2, "file:///s.zip", "0" * 64, "flow.py",
                                                       enabled=False, rule_keys=(("default", "go"),)))
    assert routes.route(_sent(Event(key="go"))) == []
    assert ("default", "w2") not in routes.inboxes


def test_junk_on_a_checked_topic_is_dead_lettered_and_a_good_record_makes_nothing(routes: Routes) -> None:
    assert routes.route(_record(b"junk", topic="p.control"))[0].role == topics.DLQ
    definition = WorkflowDefinition("default", "w3", 1, "file:///s.zip", "0" * 64, "flow.py").to_record()
    assert routes.route(_record(definition.value, definition.key_bytes(), topic="p.workflows")) == []


def test_the_outcomes_of_a_step_are_counted_once_it_commits(routes: Routes) -> None:
    def value(outcome: str) -> float:
        return REGISTRY.get_sample_value("aiflow_router_records_total", {"outcome": outcome}) or 0.0

    loop = metrics.LoopMetrics("router")
    before = {o: value(o) for o in ("routed", "unrouted", "dead_lettered")}
    for msg in (_sent(Event(key="go")), _sent(Event(key="go")), _sent(Event(key="x")), _record(b"\xc3\x01junk")):
        loop.routed(msg, routes.route(msg), routes.events_topic)
    loop.clear()  # rolled back: nothing counted
    loop.apply()
    assert {o: value(o) for o in before} == before
    for msg in (_sent(Event(key="go")), _sent(Event(key="go")), _sent(Event(key="x")), _record(b"\xc3\x01junk")):
        loop.routed(msg, routes.route(msg), routes.events_topic)
    loop.apply()
    assert {o: value(o) - before[o] for o in before} == {"routed": 2, "unrouted": 1, "dead_lettered": 1}
