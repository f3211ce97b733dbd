"""The topics: names, partitions and policies, created idempotently from configuration.

The roles themselves are part of the wire contract (aiflow/protocol/topics.py); this module gives
them their names on the cluster and their settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ClusterMetadata,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from aiflow.config import Config
from aiflow.errors import KafkaUnavailable
from aiflow.kafka import clients
from aiflow.protocol.records import PRODUCER_MAX_BYTES
from aiflow.protocol.topics import (
    ALL,
    CONTROL,
    DLQ,
    EVENTS,
    INBOX,
    LOGS,
    STATE,
    TASKS,
    WORKFLOWS,
    tasks_role,
    topic_name,
)

__all__ = ["ALL", "CONTROL", "DLQ", "EVENTS", "INBOX", "LOGS", "STATE", "TASKS", "WORKFLOWS", "TopicSpec",
           "TopicReport",
           "create_topics", "ensure_queue_topics", "queue_spec", "describe_topics", "name", "partition_count", "specs"]


STATE_SEGMENT_MS = 3600 * 1000  # the state topic's segment.ms and min.compaction.lag.ms


@dataclass(frozen=True)
class TopicSpec:
    role: str
    name: str
    partitions: int
    replication_factor: int
    settings: dict[str, str]
    purpose: str


name = topic_name  # the name on the cluster of a role's topic


def specs(config: Config) -> list[TopicSpec]:
    parts = config.values["topics.partitions"]
    rf = config.values["topics.replication_factor"]
    keep = str(config.values["topics.retention_ms"])

    isr = str(config.values["topics.min_insync_replicas"])

    def spec(role: str, partitions: int, settings: dict[str, str], purpose: str) -> TopicSpec:
        # Durability: with acks=all, a write succeeds once this many replicas have it.
        return TopicSpec(role, name(config, role), partitions, rf, {**settings, "min.insync.replicas": isr},
                         purpose)

    return [
        spec(EVENTS, parts, {"cleanup.policy": "delete",
                             "retention.ms": str(config.values["topics.events_retention_ms"]),
                             # The broker's clock is the event's create_time, whoever produced it.
                             "message.timestamp.type": "LogAppendTime"},
             "user and external events; the public ingress"),
        # The inbox and the state changelog are co-partitioned: a scheduler that owns inbox
        # partition p restores its state from state partition p.
        spec(INBOX, parts, {"cleanup.policy": "delete", "retention.ms": keep},
             "what the scheduler decides on: commands, routed events, task reports"),
        spec(TASKS, parts, {"cleanup.policy": "delete", "retention.ms": keep}, "task START commands"),
        spec(CONTROL, 1, {"cleanup.policy": "delete", "retention.ms": keep},
             "STOP / KILL commands, read by every worker"),
        # The state changelog is compacted so that a restore reads about one record per live entity:
        # the projector tombstones each settled execution once the database holds it.
        spec(STATE, parts, {"cleanup.policy": "compact",
                            # Compaction cleans only closed segments: roll one every hour, so records
                            # and tombstones do not wait for a 1 GiB segment (the default) to fill.
                            "segment.ms": str(STATE_SEGMENT_MS),
                            # Every record stays at least this long, so a projector lagging up to an hour
                            # still sees each intermediate record (and each try trimmed from later ones).
                            "min.compaction.lag.ms": str(STATE_SEGMENT_MS),
                            # A tombstone outlives its key's records by a day, so a reader that started
                            # before the clean-up (a restore, `db rebuild`) sees it too.
                            "delete.retention.ms": str(24 * 3600 * 1000),
                            # Clean once a tenth of the log is superseded (default half): most of this
                            # topic is superseded versions and settled executions.
                            "min.cleanable.dirty.ratio": "0.1"},
             "changelog of the scheduler's state"),
        spec(WORKFLOWS, 1, {"cleanup.policy": "compact"}, "workflow definitions and the keys they listen to"),
        # A dead letter is a record as received plus headers: room for a record at the broker's limit.
        spec(DLQ, 1, {"cleanup.policy": "delete", "retention.ms": str(config.values["topics.dlq_retention_ms"]),
                      "max.message.bytes": str(PRODUCER_MAX_BYTES)},
             "records that could not be decoded or applied, with the reason in headers"),
        # Task output, keyed by try: time-based retention, compressed as the workers' producers send it
        # (lz4: the broker stores their batches as they are instead of compressing them again).
        spec(LOGS, parts, {"cleanup.policy": "delete", "retention.ms": str(config.values["topics.logs_retention_ms"]),
                           "compression.type": "lz4"},
             "the output of task tries, in chunks keyed by try"),
    ]


@dataclass(frozen=True)
class TopicReport:
    name: str
    action: str  # created | exists | updated
    detail: str = ""


def create_topics(config: Config, timeout: float = 30.0) -> list[TopicReport]:
    """Create the missing topics and bring the policies of existing ones in line with configuration.

    Idempotent: running it again changes nothing. Partitions are never reduced (Kafka cannot);
    a topic with fewer partitions than configured is reported, not altered, since adding partitions
    moves keys to other partitions.
    """
    admin = clients.admin(config)
    clients.check_reachable(config)
    existing = admin.list_topics(timeout=timeout).topics
    wanted = specs(config)
    reports: list[TopicReport] = []

    missing = [s for s in wanted if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                      config=s.settings) for s in missing],
            operation_timeout=timeout, request_timeout=timeout)
        for topic, future in futures.items():
            try:
                future.result()
                reports.append(TopicReport(topic, "created"))
            except KafkaException as exc:
                if exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    reports.append(TopicReport(topic, "exists"))
                else:
                    raise KafkaUnavailable(f"cannot create topic {topic}: {exc.args[0].str()}") from None

    if missing:
        _wait_for_leaders(admin, [s.name for s in missing], timeout)

    present = [s for s in wanted if s.name in existing]
    if present:
        current = describe_configs(config, [s.name for s in present])
        to_alter = []
        for s in present:
            differing = {k: v for k, v in s.settings.items() if current[s.name].get(k) != v}
            have = len(existing[s.name].partitions)
            detail = "" if have == s.partitions else f"has {have} partitions, configured {s.partitions}"
            if differing:
                to_alter.append(ConfigResource(ResourceType.TOPIC, s.name, incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in differing.items()]))
                reports.append(TopicReport(s.name, "updated", ", ".join(f"{k}={v}" for k, v in differing.items())
                                           + (f"; {detail}" if detail else "")))
            else:
                reports.append(TopicReport(s.name, "exists", detail))
        if to_alter:
            for future in admin.incremental_alter_configs(to_alter).values():
                future.result()
    order = {s.name: i for i, s in enumerate(wanted)}
    return sorted(reports, key=lambda r: order[r.name])


def queue_spec(config: Config, queue: str) -> TopicSpec:
    """The tasks topic of a queue: the default queue's is `<prefix>.tasks`, another's `<prefix>.tasks.<queue>`,
    with the same partitions and policy."""
    base = next(s for s in specs(config) if s.role == TASKS)
    role = tasks_role(queue)
    return replace(base, role=role, name=name(config, role), purpose=f"task START commands of queue {queue!r}")


_queue_topics: set[tuple[str, str]] = set()  # (bootstrap, topic) known to exist, in this process


def ensure_queue_topics(config: Config, queues: Iterable[str], timeout: float = 30.0) -> list[str]:
    """Create the tasks topics of `queues` that are missing, and return their names. A queue's topic
    is created on demand, by the first of a worker serving it (at its start) and a scheduler about to
    send it a START; `aiflow topics create` makes only the default queue's. Once known to exist, a
    topic is not asked about again by this process. KafkaUnavailable if one cannot be created."""
    wanted = [queue_spec(config, q) for q in dict.fromkeys(queues)]
    wanted = [s for s in wanted if (config.bootstrap, s.name) not in _queue_topics]
    if not wanted:
        return []
    admin = clients.admin(config)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot list topics: {exc.args[0]}") from None
    missing = [s for s in wanted if s.name not in existing]
    created = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                      config=s.settings) for s in missing], operation_timeout=timeout, request_timeout=timeout)
        for topic, future in futures.items():
            try:
                future.result()
                created.append(topic)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise KafkaUnavailable(f"cannot create topic {topic}: {exc.args[0].str()}") from None
        _wait_for_leaders(admin, [s.name for s in missing], timeout)
    _queue_topics.update((config.bootstrap, s.name) for s in wanted)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Return once every partition of the new topics has a leader, so the first reader does not
    meet NOT_LEADER_FOR_PARTITION while the metadata spreads."""
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout).topics
        ready = all(n in metadata and metadata[n].partitions and
                    all(p.leader >= 0 for p in metadata[n].partitions.values()) for n in names)
        if ready:
            return
        if time.monotonic() > deadline:
            raise KafkaUnavailable(f"topics {', '.join(names)} have no leader after {timeout:.0f} s")
        time.sleep(0.1)


def describe_configs(config: Config, names: list[str]) -> dict[str, dict[str, str]]:
    admin = clients.admin(config)
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    result: dict[str, dict[str, str]] = {}
    for resource, future in futures.items():
        result[resource.name] = {k: str(e.value) for k, e in future.result().items()}
    return result


def describe_topics(config: Config, timeout: float = 10.0) -> list[dict[str, object]]:
    """The configured topics with what the cluster has: partitions, replication and policies."""
    clients.check_reachable(config)
    metadata = clients.admin(config).list_topics(timeout=timeout).topics
    wanted = specs(config)
    queue_prefix = name(config, TASKS) + "."  # the tasks topics of queues other than the default one
    wanted += [queue_spec(config, t[len(queue_prefix):]) for t in sorted(metadata) if t.startswith(queue_prefix)]
    present = [s.name for s in wanted if s.name in metadata]
    settings = describe_configs(config, present) if present else {}
    rows: list[dict[str, object]] = []
    for s in wanted:
        topic = metadata.get(s.name)
        conf = settings.get(s.name, {})
        rows.append({
            "topic": s.name,
            "exists": topic is not None,
            "partitions": len(topic.partitions) if topic else None,
            "replication": len(topic.partitions[0].replicas) if topic and topic.partitions else None,
            "cleanup.policy": conf.get("cleanup.policy"),
            "retention.ms": conf.get("retention.ms"),
            "purpose": s.purpose,
        })
    return rows


_partition_counts: dict[tuple[str, str], int] = {}


def partition_count(config: Config, role: str, answer: ClusterMetadata | None = None) -> int:
    """How many partitions the topic has on the cluster: asked once per process, and not at all when `answer` (the
    cluster's metadata, had from check_reachable) names the topic."""
    topic = name(config, role)
    key = (config.bootstrap, topic)
    if key not in _partition_counts:
        if answer is None or topic not in answer.topics:
            answer = clients.admin(config).list_topics(topic, timeout=10)
        metadata = answer.topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise KafkaUnavailable(f"topic {topic} does not exist: run `aiflow topics create`")
        _partition_counts[key] = len(metadata.partitions)
    return _partition_counts[key]
