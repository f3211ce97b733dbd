"""Everything ops sends to or asks of Kafka, and nothing else: the rest of ops reads and writes the store and
calls these.

Keeping every Kafka call here lets the transport change by editing this file alone.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from aiflow.config import Config
from aiflow.ops._dispatch import _config, _via_api

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

    from aiflow.protocol.messages import Command, WorkflowDefinition

# The Kafka client and the wire contract (confluent-kafka, fastavro and the schemas: about 80 ms) are
# imported when something is sent: commands that only read the store never pay for them.

__all__ = ["check_reachable", "prepare_to_publish", "prepare_to_send", "publish_definition", "publish_deletion",
           "scheduler_members", "send_inbox_command"]


# The producer (by role) that publishes definitions and deletions: the one prepare_to_publish makes ready.
_DEFINITIONS = "workflows"


class _Preparing(threading.Thread):
    """What a send needs of Kafka, done on a thread of its own while the caller reads the store: the client loaded,
    this process's producer made (it connects on librdkafka's threads meanwhile), and one question to the cluster,
    which tells that it answers and how many partitions the inbox has. Then, when asked, how many schedulers are in
    their group, through the same connection: the send does not wait for that answer."""

    def __init__(self, config: Config, ask_schedulers: bool) -> None:
        super().__init__(name="aiflow-prepare-send", daemon=True)
        self.config = config
        self.ask_schedulers = ask_schedulers
        self.error: Exception | None = None
        self.checked = threading.Event()  # the cluster answered, or `error` says why not
        self.schedulers: int | None = None
        self.begun = time.monotonic()
        self.start()

    def run(self) -> None:
        try:
            from aiflow.kafka import clients, sending, topics

            sending.shared_producer(self.config)
            # Asked of an admin client, not of the producer: a producer asked for metadata in its first milliseconds
            # may get it from its bootstrap connection just before dropping that one, and then wait half a second
            # for its producer id (librdkafka 2.x).
            admin = clients.probe(self.config)
            answer = clients.check_reachable(self.config, topic=topics.name(self.config, topics.INBOX), client=admin)
            topics.partition_count(self.config, topics.INBOX, answer)  # asked once per process, here, not at the send
        except Exception as exc:  # handed to the caller's check_reachable, which raises it
            self.error = exc
            return
        finally:
            self.checked.set()
        if self.ask_schedulers:
            self.schedulers = _count_schedulers(admin, self.config)


def _load_codec() -> None:
    """Import the codec and parse its schemas (about 25 ms), so that a send only encodes."""
    from aiflow.protocol.codec import default_codec
    from aiflow.protocol.messages import InboxMessage  # noqa: F401 - the messages' classes, with their schemas

    default_codec()


# Begun by prepare_to_send: taken by the next check_reachable of the same cluster, and by the next scheduler_members
# when it was asked to count the schedulers too (a count older than COUNT_FRESH_FOR seconds is asked again).
_preparing: dict[tuple[str, str], _Preparing] = {}
_counting: dict[tuple[str, str], _Preparing] = {}
_preparations_lock = threading.Lock()
COUNT_FRESH_FOR = 10.0


@_via_api
def prepare_to_send(*, config: Config | None = None, ask_schedulers: bool = False) -> None:
    """Begin, without waiting, what sending to Kafka needs: load the client, make this process's producer (it
    connects on its own threads) and check that the cluster answers; with `ask_schedulers`, then count the
    schedulers in their group (`scheduler_members` takes the answer). A command sent next (a start, a stop) then
    finds them done; the CLI calls this before it loads the store."""
    config = _config(config)
    key = (config.bootstrap, config.topic_prefix)
    with _preparations_lock:
        if key in _preparing:
            return
        preparing = _preparing[key] = _Preparing(config, ask_schedulers)
        if ask_schedulers:
            _counting[key] = preparing


def check_reachable(config: Config) -> None:
    """Raise KafkaUnavailable with what to do when the configured cluster does not answer (the outcome of
    prepare_to_send's check when one was begun)."""
    with _preparations_lock:
        preparing = _preparing.pop((config.bootstrap, config.topic_prefix), None)
    if preparing is not None:
        _load_codec()  # here, while the preparation waits for the cluster
        preparing.checked.wait()
        if preparing.error is not None:
            raise preparing.error
        return
    from aiflow.kafka import clients

    clients.check_reachable(config)


def send_inbox_command(config: Config, namespace: str, workflow: str, command: Command,
                       execution_id: str | None = None, task: str | None = None,
                       args: dict[str, str] | None = None) -> None:
    """Send a command to the scheduler that owns the workflow; returns once it is durable."""
    from aiflow.kafka import sending
    from aiflow.protocol.messages import InboxMessage

    sending.send(config, InboxMessage.for_command(namespace, workflow, command, execution_id, task, args).to_record())


def prepare_to_publish(config: Config) -> None:
    """Load the Kafka client and the codec and make the producer that publishes definitions, which connects in
    the background: done while something slower runs (a workflow file loading), a publish then only sends."""
    import importlib

    from aiflow.kafka import sending

    importlib.import_module("aiflow.protocol.messages")  # the codec and its schemas, for the publish to come
    sending.shared_producer(config, _DEFINITIONS)


def publish_definition(config: Config, definition: WorkflowDefinition) -> None:
    """Publish the workflow's definition on the workflows topic; returns once it is durable."""
    from aiflow.kafka import sending

    sending.send(config, definition.to_record(), _DEFINITIONS)


def publish_deletion(config: Config, namespace: str, workflow: str) -> None:
    """Tell the router and schedulers the workflow is gone; returns once it is durable."""
    from aiflow.kafka import sending
    from aiflow.protocol.messages import WorkflowDeleted

    sending.send(config, WorkflowDeleted(namespace, workflow).to_record(), _DEFINITIONS)


def scheduler_members(config: Config, timeout: float = 3.0) -> int | None:
    """How many schedulers are in their consumer group now (one request to the group's coordinator); None
    when Kafka does not tell within `timeout` seconds. The answer of prepare_to_send's count, when one was asked."""
    with _preparations_lock:
        preparing = _counting.pop((config.bootstrap, config.topic_prefix), None)
    if preparing is not None and time.monotonic() - preparing.begun < COUNT_FRESH_FOR:
        preparing.join(timeout + 5.0)  # its check has its own time limit, then its count this one
        return preparing.schedulers
    from aiflow.kafka import clients

    try:
        admin = clients.probe(config)
    except Exception:  # KafkaException: a client that cannot even be made
        return None
    return _count_schedulers(admin, config, timeout)


def _count_schedulers(admin: AdminClient, config: Config, timeout: float = 3.0) -> int | None:
    group = f"{config.topic_prefix}-scheduler"
    try:
        return len(admin.describe_consumer_groups([group], request_timeout=timeout)[group].result().members)
    except Exception:  # KafkaException, or a group the coordinator cannot describe yet
        return None
