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

Cost: an event is decoded once, whether or not anyone listens, because the router is the one reader
that dead-letters it; it is not encoded again. Its bytes go into each inbox message as they came
(`InboxMessage` v3's `event_bytes`, written around them by `protocol.forwarding`) and the scheduler
decodes those same bytes, so what the router checked is what the scheduler reads. The router does
not route by record headers: they are the sender's word, unchecked, and the decoding that the
dead-letter guarantee needs gives the same fields. A transaction takes up to MAX_BATCH records.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from aiflow.config import Config
from aiflow.errors import RecordError
from aiflow.events.context import TASK_NAMESPACE_CONTEXT
from aiflow.kafka import sending, topics
from aiflow.kafka.readers import DefinitionFollower, WorkflowId
from aiflow.kafka.transactions import TransactionalLoop
from aiflow.protocol.deadletter import dead_letter, decode_or_dead_letter, reason_of
from aiflow.protocol.forwarding import EventBytes, Inbox, encode_routed_event
from aiflow.protocol.messages import ControlCommand, WorkflowDefinition, read_workflow_record
from aiflow.protocol.records import RawRecord, Record, source_of

log = logging.getLogger(__name__)

# Records taken into one transaction (throughput). A commit costs a few milliseconds whatever its size
# (offsets to the group coordinator, then the commit markers): with 500 records a transaction, the
# loop's default, commits took 40 % of the router's time once routing itself got cheap; with 5000,
# under 10 %. A poll still returns at once with what is there, so a lone event waits for nothing
# more. The price: an input that makes a step fail for good (RecordError) has its whole batch taken
# again one record at a time, so the router dead-letters what it can foresee (an inbox record over
# the size limit) itself, in the batch's transaction.
MAX_BATCH = 5000


class SentEvent(Protocol):
    """What the isolation check reads of an event (an Event or an EventBytes)."""

    @property
    def namespace(self) -> str: ...
    @property
    def workflow(self) -> str | None: ...
    @property
    def execution_id(self) -> str | None: ...
    @property
    def task(self) -> str | None: ...
    @property
    def context(self) -> Mapping[str, str]: ...


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


class Routes:
    """What the router decides, without Kafka: the indexes, and the records one consumed record makes."""

    def __init__(self, config: Config, inbox_partitions: Callable[[], int]) -> None:
        self.config = config
        self.rules = RuleIndex()  # task rules of enabled workflows (events from tasks: the sender's workflow only)
        self.triggers = RuleIndex()  # workflow triggers of enabled workflows: any event of their namespace
        self.inboxes: dict[WorkflowId, Inbox] = {}  # of the workflows indexed
        self.events_topic = topics.name(config, topics.EVENTS)
        self.checked = {topics.name(config, topics.CONTROL): ControlCommand.from_record,
                        topics.name(config, topics.WORKFLOWS): read_workflow_record}
        self._count_partitions = inbox_partitions
        self._partitions = 0  # asked for at the first event routed

    def index(self, workflow: WorkflowId, definition: WorkflowDefinition | None) -> None:
        """Follow a workflow's definition (None: deleted)."""
        if definition is None:
            self.rules.remove(workflow)
            self.triggers.remove(workflow)
            self.inboxes.pop(workflow, None)
            return
        # A disabled workflow's rules listen to nothing (the scheduler checks too, for what is already routed).
        self.rules.update(workflow, definition.rule_keys if definition.enabled else ())
        self.triggers.update(workflow, definition.trigger_keys if definition.enabled else ())
        if workflow not in self.inboxes:
            try:
                self.inboxes[workflow] = Inbox.of(*workflow)
            except RecordError:  # left to the first event for it, which is dead-lettered with the reason
                pass

    def route(self, msg: RawRecord) -> list[Record]:
        """The inbox records of one event, or its dead letter; nothing for a readable record of a
        topic the router only checks, or for an event no workflow listens to."""
        dead: list[Record] = []
        if msg.topic() != self.events_topic:
            decode_or_dead_letter(msg, self.checked[msg.topic() or ""], "router", dead)
            return dead
        event = decode_or_dead_letter(msg, EventBytes.from_record, "router", dead)
        if event is None:
            return dead
        breach = self.isolation_breach(event)
        if breach:
            log.warning("router: event %r at %s sent to the dead-letter topic: %s", event.key[:200], source_of(msg),
                        breach)
            return [dead_letter(msg, breach, "router")]
        namespace = event.namespace
        targets = self.rules.lookup(namespace, event.key)
        if targets and event.execution_id and event.workflow:  # from a task: its own workflow's rules only
            own = (namespace, event.workflow)
            targets = {own} if own in targets else set()
        triggered = self.triggers.lookup(namespace, event.key)
        if triggered:
            targets = targets | triggered
        if not targets:
            return []
        source = source_of(msg)
        partitions = self._partitions or self._count()
        records = []
        # What no retry can cure is dead-lettered here rather than raised: a step that fails for good takes
        # its whole batch again one record at a time.
        try:
            for target in sorted(targets):
                inbox = self.inboxes.get(target) or Inbox.of(*target)
                record = Record(topics.INBOX, inbox.key, encode_routed_event(inbox, event.data, source,
                                                                             event.execution_id),
                                inbox.hash % partitions)
                record.check_size()
                records.append(record)
        except RecordError as exc:
            log.warning("router: event %r at %s sent to the dead-letter topic: %s", event.key[:200], source, exc)
            return [dead_letter(msg, reason_of(exc), "router")]
        return records

    def _count(self) -> int:
        self._partitions = self._count_partitions()
        return self._partitions

    def isolation_breach(self, event: SentEvent) -> str:
        """Why an event from a task of an isolated namespace may not go where it is sent ('' if it may)."""
        if not event.execution_id or not event.workflow:
            return ""
        home = event.context.get(TASK_NAMESPACE_CONTEXT)
        if home is None or home == event.namespace or not self.config.is_isolated(home):
            return ""
        return (f"task {event.workflow}/{event.task} (execution {event.execution_id}) of isolated namespace {home!r} "
                f"sent an event into namespace {event.namespace!r}; see worker.isolated_namespaces")


class Router:
    """The loop: consume a batch, route each record, produce, commit, in one transaction."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.routes = Routes(config, lambda: topics.partition_count(config, topics.INBOX))
        self.definitions = DefinitionFollower(config, "router", self.routes.index)
        self.loop = TransactionalLoop(config, "router", [self.routes.events_topic, *self.routes.checked],
                                      f"{config.topic_prefix}-router")

    def step(self) -> int:
        self.definitions.poll()
        msgs = self.loop.poll(MAX_BATCH)
        if not msgs:
            return 0
        self.loop.begin()
        producer, metrics, events_topic = self.loop.producer, self.loop.metrics, self.routes.events_topic
        for msg in msgs:
            records = self.routes.route(msg)
            metrics.routed(msg, records, events_topic)
            for record in records:
                sending.produce(producer, self.config, record)
        self.loop.commit()
        return len(msgs)

    def run(self, stop: threading.Event) -> None:
        self.definitions.catch_up(stop)
        log.info("router: started with %d workflows indexed", len(self.routes.rules))
        try:
            self.loop.run_until(stop, self.step)
        finally:
            self.loop.close()
            self.definitions.close()
