"""The router: sends each event to the inboxes of the workflows whose rules listen to it.

Guarantees: each event is routed exactly once (consume -> produce -> offsets in one transaction,
see aiflow/kafka/transactions.py). Lookup is one dict access per event: the index maps
(namespace, event key) to the workflows listening, built from the compacted workflows topic and
kept current as definitions change. Scoping (DESIGN §8): an event sent from inside a task goes only
to its own workflow; any other event goes to every workflow of its namespace that listens to its key.
A record that is not an event goes to the dead-letter topic, in the same transaction.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from confluent_kafka import KafkaError, Message, TopicPartition

from aiflow.config import Config
from aiflow.errors import DecodeError
from aiflow.events.codec import WORKFLOW_DEFINITION, default_codec
from aiflow.events.records import event_from_record
from aiflow.kafka import clients, dlq, messages, topics
from aiflow.kafka.messages import Record
from aiflow.kafka.transactions import TransactionalLoop
from aiflow.kafka.workflows import WorkflowDefinition

log = logging.getLogger(__name__)

WorkflowId = tuple[str, str]


class RuleIndex:
    """(namespace, event key) -> the workflows whose task rules listen to it."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], set[WorkflowId]] = defaultdict(set)
        self._keys_of: dict[WorkflowId, list[tuple[str, str]]] = {}

    def update(self, workflow: WorkflowId, keys: list[tuple[str, str]]) -> None:
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


class DefinitionFollower:
    """Reads the workflows topic from the start, then keeps following it: the current definition of
    every workflow, and a callback on each change (None: deleted)."""

    def __init__(self, config: Config,
                 on_change: Callable[[WorkflowId, WorkflowDefinition | None], None] | None = None) -> None:
        self.codec = default_codec()
        self.definitions: dict[WorkflowId, WorkflowDefinition] = {}
        self.on_change = on_change
        self.consumer = clients.consumer(config, role="definitions", settings={"enable.partition.eof": True})
        self.consumer.assign([TopicPartition(topics.name(config, topics.WORKFLOWS), 0, 0)])
        self.caught_up = False

    def poll(self, timeout: float = 0.0) -> None:
        for msg in self.consumer.consume(1000, timeout=timeout):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self.caught_up = True
                continue
            namespace, _, name = (msg.key() or b"").decode().partition("/")
            value = msg.value()
            definition: WorkflowDefinition | None = None
            if value is not None:
                try:
                    definition = WorkflowDefinition.from_avro(
                        self.codec.decode(value, expected=WORKFLOW_DEFINITION)[1])
                except DecodeError as exc:
                    log.error("unreadable workflow definition %s/%s: %s", namespace, name, exc)
                    continue
            if definition is None:
                self.definitions.pop((namespace, name), None)
            else:
                self.definitions[(namespace, name)] = definition
            if self.on_change:
                self.on_change((namespace, name), definition)

    def catch_up(self) -> None:
        while not self.caught_up:
            self.poll(timeout=0.5)

    def close(self) -> None:
        self.consumer.close()


class Router:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.codec = default_codec()
        self.rules = RuleIndex()  # task rules: scoped to the sender's workflow for events from tasks
        self.triggers = RuleIndex()  # workflow triggers of enabled workflows: any event of their namespace
        self.definitions = DefinitionFollower(config, self._index)
        self.loop = TransactionalLoop(config, "router", topics.name(config, topics.EVENTS),
                                      f"{config.topic_prefix}-router")

    def _index(self, workflow: WorkflowId, definition: WorkflowDefinition | None) -> None:
        if definition is None:
            self.rules.remove(workflow)
            self.triggers.remove(workflow)
            return
        self.rules.update(workflow, definition.rule_keys)
        self.triggers.update(workflow, definition.trigger_keys if definition.enabled else [])

    def route(self, msg: Message) -> list[Record]:
        try:
            event = event_from_record(self.codec, msg)
        except DecodeError as exc:
            return [messages.dead_letter(msg, str(exc), "router")]
        targets = self.rules.lookup(event.namespace, event.key)
        if event.execution_id and event.workflow:
            targets = {t for t in targets if t == (event.namespace, event.workflow)}
        targets = targets | self.triggers.lookup(event.namespace, event.key)
        source = dlq.source_of(msg)
        return [messages.inbox_event(ns, wf, event, source) for ns, wf in sorted(targets)]

    def step(self) -> int:
        self.definitions.poll()
        msgs = self.loop.poll()
        if not msgs:
            return 0
        self.loop.begin()
        for msg in msgs:
            for record in self.route(msg):
                messages.produce(self.loop.producer, self.config, record)
        self.loop.commit()
        return len(msgs)

    def run(self, stop: threading.Event) -> None:
        self.definitions.catch_up()
        log.info("router: started with %d workflows indexed", len(self.rules))
        try:
            self.loop.run_until(stop, self.step)
        finally:
            self.loop.close()
            self.definitions.close()
