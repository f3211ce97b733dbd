"""`aiflow status`: what runs, as Kafka sees it.

- Services: the members of the consumer groups of routers, schedulers, workers and projectors
  (`<prefix>-router`, `-scheduler`, `-worker`, `-projector`), with their client id, host and the
  partitions they hold. A scheduler process is one member of each of the router, scheduler and
  projector groups. A worker that is full leaves its group for a while (docs/running.md): it is then
  missing here but still heard below.
- Workers: the beacons every worker sends to the inbox each heartbeat interval, read back from the
  tail of the inbox topic: when each was last heard, its free slots, and the tries it sent heartbeats
  for in that time.
- Lag: per group and partition, the records not committed yet (the end offset minus the committed one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import click

from aiflow.cli.common import load_config
from aiflow.cli.output import emit, output_option
from aiflow.config import Config
from aiflow.errors import AIFlowError

GROUPS = ("scheduler", "router", "projector", "worker")
MEMBER_COLUMNS = ("role", "group", "state", "client_id", "host", "partitions", "member_id")
WORKER_COLUMNS = ("worker", "queues", "last_heard", "seconds_ago", "free_slots", "running_tries")
LAG_COLUMNS = ("group", "topic", "partition", "committed", "end", "lag")


# -- gathering -------------------------------------------------------------------------------
def group_members(config: Config, timeout: float = 10.0) -> list[dict[str, Any]]:
    """One row per member of aiflow's consumer groups (a group without members: one row, no member)."""
    from aiflow.kafka import clients

    admin = clients.admin(config)
    names = {f"{config.topic_prefix}-{role}": role for role in GROUPS}
    rows: list[dict[str, Any]] = []
    for group, future in admin.describe_consumer_groups(list(names), request_timeout=timeout).items():
        role = names[group]
        try:
            description = future.result()
        except Exception as exc:  # a group that was never formed
            rows.append({"role": role, "group": group, "state": f"unknown ({exc})", "client_id": "", "host": "",
                         "partitions": "", "member_id": ""})
            continue
        state = getattr(description.state, "name", str(description.state)).lower()
        if not description.members:
            rows.append({"role": role, "group": group, "state": state, "client_id": "", "host": "",
                         "partitions": "", "member_id": ""})
        for member in description.members:
            assigned = member.assignment.topic_partitions if member.assignment else []
            rows.append({"role": role, "group": group, "state": state, "client_id": member.client_id,
                         "host": member.host.lstrip("/"), "partitions": partitions_text(config, assigned),
                         "member_id": member.member_id})
    rows.sort(key=lambda r: (GROUPS.index(r["role"]), r["host"], r["client_id"], r["member_id"]))
    return rows


def partitions_text(config: Config, assigned: Sequence[Any]) -> str:
    """`inbox/0,1 tasks/2`: the partitions of a member, by topic (without the prefix)."""
    by_topic: dict[str, list[int]] = {}
    for tp in assigned:
        topic = tp.topic[len(config.topic_prefix) + 1:] if tp.topic.startswith(config.topic_prefix + ".") else tp.topic
        by_topic.setdefault(topic, []).append(tp.partition)
    return " ".join(f"{t}/{','.join(map(str, sorted(ps)))}" for t, ps in sorted(by_topic.items()))


def recent_inbox(config: Config, window: float, limit: int = 50_000) -> list[Any]:
    """The InboxMessages of the last `window` seconds (at most `limit` per partition), oldest first."""
    from confluent_kafka import KafkaError, TopicPartition

    from aiflow.kafka import clients, topics
    from aiflow.protocol.deadletter import decode_or_dead_letter
    from aiflow.protocol.messages import InboxMessage

    topic = topics.name(config, topics.INBOX)
    consumer = clients.consumer(config, role="status", settings={"enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise AIFlowError(f"topic {topic} does not exist: run `aiflow topics create`")
        since = int((time.time() - window) * 1000)
        starts = consumer.offsets_for_times([TopicPartition(topic, p, since) for p in metadata.partitions], timeout=10)
        assigned: list[TopicPartition] = []
        ends: dict[int, int] = {}
        for tp in starts:
            end = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
            if tp.offset < 0 or tp.offset >= end:  # nothing that recent
                continue
            assigned.append(TopicPartition(topic, tp.partition, max(tp.offset, end - limit)))
            ends[tp.partition] = end
        consumer.assign(assigned)
        found: list[Any] = []
        done: set[int | None] = set()
        deadline = time.monotonic() + 20
        while len(done) < len(assigned) and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done.add(msg.partition())
                    continue
                m = decode_or_dead_letter(msg, InboxMessage.from_record, "status", None)
                if m is not None:
                    found.append(m)
                if (msg.offset() or 0) >= ends.get(msg.partition() or 0, 0) - 1:
                    done.add(msg.partition())
        return sorted(found, key=lambda m: m.create_time)
    finally:
        consumer.close()


def workers_heard(messages: Sequence[Any], now: datetime) -> list[dict[str, Any]]:
    """One row per worker heard in `messages` (inbox messages, oldest first): its last beacon's time and
    free slots, and the tries it sent heartbeats or RUNNING reports for."""
    from aiflow.protocol.messages import InboxKind

    last: dict[str, Any] = {}
    tries: dict[str, set[str]] = {}
    for m in messages:
        if m.kind is InboxKind.WORKER:
            last[m.workflow] = m  # a beacon names its worker where a report names its workflow
        elif m.kind in (InboxKind.HEARTBEAT, InboxKind.TASK_STATUS) and m.report is not None and m.report.worker:
            key = f"{m.workflow}/{m.report.task}#{m.report.try_number} ({m.report.execution_id})"
            if m.report.status in (None, "RUNNING"):
                tries.setdefault(m.report.worker, set()).add(key)
            else:
                tries.setdefault(m.report.worker, set()).discard(key)
    rows = []
    for name, beacon in sorted(last.items()):
        rows.append({"worker": name, "queues": list(beacon.queues),
                     "last_heard": beacon.create_time.isoformat(timespec="seconds"),
                     "seconds_ago": round(max(0.0, (now - beacon.create_time).total_seconds()), 1),
                     "free_slots": beacon.free_slots, "running_tries": sorted(tries.get(name, ()))})
    return rows


def gather(config: Config, window: float) -> dict[str, Any]:
    """Everything `aiflow status` shows (AIFlowError if Kafka does not answer)."""
    from confluent_kafka import KafkaException

    from aiflow.kafka import clients
    from aiflow.metrics import consumer_lag

    clients.check_reachable(config)
    try:
        members = group_members(config)
        workers = workers_heard(recent_inbox(config, window), datetime.now(timezone.utc))
        lag = [{"group": x.group, "topic": x.topic, "partition": x.partition, "committed": x.committed,
                "end": x.end, "lag": x.lag} for x in consumer_lag(config)]
    except KafkaException as exc:
        raise AIFlowError(f"Kafka at {config.bootstrap}: {exc.args[0]}") from None
    return {"kafka": config.bootstrap, "topic_prefix": config.topic_prefix, "services": members,
            "workers": workers, "lag": lag}


# -- printing --------------------------------------------------------------------------------
def summary(status: Mapping[str, Any]) -> str:
    """One line: how many of each service are live."""
    live = {role: len({r["member_id"] for r in status["services"] if r["role"] == role and r["member_id"]})
            for role in GROUPS}
    behind = sum(r["lag"] for r in status["lag"])
    return (f"Kafka {status['kafka']}, topics {status['topic_prefix']}.*: {live['scheduler']} schedulers, "
            f"{live['router']} routers, {live['projector']} projectors, {live['worker']} workers in their groups; "
            f"{len(status['workers'])} workers heard; {behind} records not yet committed")


def print_status(status: Mapping[str, Any], fmt: str) -> None:
    if fmt in ("json", "yaml"):
        emit(status, fmt)
        return
    click.echo(summary(status))
    for title, key, columns in (("Services (consumer group members)", "services", MEMBER_COLUMNS),
                                ("Workers heard", "workers", WORKER_COLUMNS),
                                ("Lag", "lag", LAG_COLUMNS)):
        click.echo(f"\n{title}:")
        rows = [{**r, "running_tries": " ".join(r["running_tries"]), "queues": ",".join(r.get("queues", []))}
                if "running_tries" in r else r for r in status[key]]
        emit(rows, fmt, columns)


@click.command("status")
@click.option("--window", type=click.FloatRange(min=1), default=None,
              help="Seconds of the inbox to read for worker beacons (default: 3 heartbeat intervals, at least 15).")
@output_option
def status(window: float | None, fmt: str) -> None:
    """Show the live schedulers, routers, projectors and workers, the workers' slots and tries, and the
    consumer lag, as Kafka sees them."""
    try:
        config = load_config()
        window = window or max(15.0, 3 * float(config.values["worker.heartbeat_interval"]))
        result = gather(config, window)
    except AIFlowError as exc:
        raise click.ClickException(str(exc)) from None
    print_status(result, fmt)
