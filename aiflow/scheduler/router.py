"""The router: sends each event to the inboxes of the workflows whose rules listen to it.

Guarantees: each event is routed exactly once (consume -> produce -> offsets in one transaction,
see aiflow/kafka/transactions.py). Lookup is one dict access per event: the index maps
(namespace, event key) to the workflows listening, built from the compacted workflows topic and
kept current as definitions change. Scoping: an event sent from inside a task goes only to its own
workflow; any other event goes to every workflow of its namespace that listens to its key.

Isolated namespaces (`worker.isolated_namespaces`): an event that says it comes from a task of an
isolated namespace (its task fields, and the task's namespace that the event client stamps in its
context) but is sent into another namespace is dead-lettered, with the reason, instead of routed.
The router can only go by what the event says of itself: this stops a task that got past its own
client's check, not one that writes records of its own making (docs/operations.md).

The router owns the events topic, and also the control and workflows topics, which every worker and
every scheduler read but none can own (protocol/topics.py): its consumer group reads them only to
check them. A record that cannot be read goes to the dead-letter topic, in the same transaction.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence

from confluent_kafka import Message

from aiflow.config import Config
from aiflow.events.context import TASK_NAMESPACE_CONTEXT
from aiflow.kafka import sending, topics
from aiflow.kafka.readers import DefinitionFollower, WorkflowId
from aiflow.kafka.transactions import TransactionalLoop
from aiflow.protocol.deadletter import dead_letter, decode_or_dead_letter
from aiflow.protocol.messages import ControlCommand, Event, InboxMessage, WorkflowDefinition, read_workflow_record
from aiflow.protocol.records import Record, source_of

log = logging.getLogger(__name__)


class RuleIndex:
    """(namespace, event key) -> the workflows whose task rules listen to it."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], set[WorkflowId]] = defaultdict(set)
        self._keys_of: dict[WorkflowId, Sequence[tuple[str, str]]] = {}

    def update(self, workflow: WorkflowId, keys: Sequence[tuple[str, str]]) -> None:
        self.remove(workflow)
        self._keys_of[workflow] = keys
        for key in keys:
            self._by_key[key].add(workflow)

    def remove(self, workflow: WorkflowId) -> None:
        for key in self._keys_of.pop(workflow, []):
            self._by_key[key].discard(workflow)
            if not self._by_key[key]:
                del self._by_key[key]

    def lookup(self, namespace: str, key: str) -> set[WorkflowId]:
        return self._by_key.get((namespace, key), set())

    def __len__(self) -> int:
        return len(self._keys_of)


class Router:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rules = RuleIndex()  # task rules of enabled workflows (events from tasks: the sender's workflow only)
        self.triggers = RuleIndex()  # workflow triggers of enabled workflows: any event of their namespace
        self.definitions = DefinitionFollower(config, "router", self._index)
        self.events_topic = topics.name(config, topics.EVENTS)
        self.checked = {topics.name(config, topics.CONTROL): ControlCommand.from_record,
                        topics.name(config, topics.WORKFLOWS): read_workflow_record}
        self.loop = TransactionalLoop(config, "router", [self.events_topic, *self.checked],
                                      f"{config.topic_prefix}-router")

    def _index(self, workflow: WorkflowId, definition: WorkflowDefinition | None) -> None:
        if definition is None:
            self.rules.remove(workflow)
            self.triggers.remove(workflow)
            return
        # A disabled workflow's rules listen to nothing (the scheduler checks too, for what is already routed).
        self.rules.update(workflow, definition.rule_keys if definition.enabled else ())
        self.triggers.update(workflow, definition.trigger_keys if definition.enabled else ())

    def route(self, msg: Message) -> list[Record]:
        """The inbox records of one event, or its dead letter; nothing for a readable record of a
        topic the router only checks."""
        dead: list[Record] = []
        if msg.topic() != self.events_topic:
            decode_or_dead_letter(msg, self.checked[msg.topic() or ""], "router", dead)
            return dead
        event = decode_or_dead_letter(msg, Event.from_record, "router", dead)
        if event is None:
            return dead
        breach = self._isolation_breach(event)
        if breach:
            log.warning("router: event %r at %s sent to the dead-letter topic: %s", event.key[:200], source_of(msg),
                        breach)
            return [dead_letter(msg, breach, "router")]
        targets = self.rules.lookup(event.namespace, event.key)
        if event.execution_id and event.workflow:
            targets = {t for t in targets if t == (event.namespace, event.workflow)}
        targets = targets | self.triggers.lookup(event.namespace, event.key)
        source = source_of(msg)
        return [InboxMessage.for_event(ns, wf, event, source).to_record() for ns, wf in sorted(targets)]

    def _isolation_breach(self, event: Event) -> str:
        """Why an event from a task of an isolated namespace may not go where it is sent ('' if it may)."""
        if not event.execution_id or not event.workflow:
            return ""
        home = event.context.get(TASK_NAMESPACE_CONTEXT)
        if home is None or home == event.namespace or not self.config.is_isolated(home):
            return ""
        return (f"task {event.workflow}/{event.task} (execution {event.execution_id}) of isolated namespace {home!r} "
                f"sent an event into namespace {event.namespace!r}; see worker.isolated_namespaces")

    def step(self) -> int:
        self.definitions.poll()
        msgs = self.loop.poll()
        if not msgs:
            return 0
        self.loop.begin()
        for msg in msgs:
            records = self.route(msg)
            self.loop.metrics.routed(msg, records, self.events_topic)
            for record in records:
                sending.produce(self.loop.producer, self.config, record)
        self.loop.commit()
        return len(msgs)

    def run(self, stop: threading.Event) -> None:
        self.definitions.catch_up(stop)
        log.info("router: started with %d workflows indexed", len(self.rules))
        try:
            self.loop.run_until(stop, self.step)
        finally:
            self.loop.close()
            self.definitions.close()
