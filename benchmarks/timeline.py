"""Where a try's time goes, read back after a benchmark from the timestamps its records carry.

Every Kafka record has a timestamp in milliseconds. On the events topic it is the broker's clock when
the record was appended (the topic is LogAppendTime: topics.py); on the inbox and the tasks topics it
is the producing client's clock when the record was produced (CreateTime: librdkafka stamps it in
`produce()`, before the transaction that holds the record commits, so a commit's time falls in the
stage *after* the record). Broker, services, tasks and the benchmark run on one machine: one clock.
Resolution 1 ms, so each stage is known to about ±1 ms.

After the benchmark's services have stopped, the events, inbox and tasks topics of its prefix are read
from the beginning to their ends (read_committed), and each record this module knows is kept by what
it is about: an event by its id; an inbox EVENT message by the id of the event it carries; a
START_EXECUTION command by execution; a START TaskCommand and each status of a try's TASK_STATUS reports
by try (execution, task, try number). Each is the first such committed record: a report sent again
because its first transaction failed keeps the time of the one that committed first.

One mark is not a record: a try's *go*, when its process may run the task (a try forked ahead waits,
held, until its worker's transaction that takes it has committed). The task runner logs
`starting task ...` right then, first thing in the try's log file (home/logs/WORKFLOW/EXECUTION/TASK/TRY.log),
stamped by Python's logging with the local time to the millisecond.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition

from aiflow.config import Config
from aiflow.errors import DecodeError
from aiflow.kafka import clients, topics
from aiflow.protocol.commands import Command
from aiflow.protocol.messages import Event, InboxKind, InboxMessage, TaskCommand

TryKey = tuple[str, str, int]  # execution, task, try number


@dataclass
class Timeline:
    """Record timestamps in seconds since the epoch (each a whole millisecond)."""

    events: dict[str, Event] = field(default_factory=dict)  # event id -> the event (create_time: appended)
    routed: dict[str, float] = field(default_factory=dict)  # event id -> its inbox EVENT message
    started: dict[str, float] = field(default_factory=dict)  # execution id -> its START_EXECUTION command
    commands: dict[TryKey, float] = field(default_factory=dict)  # the try's START TaskCommand
    reports: dict[TryKey, dict[str, float]] = field(default_factory=dict)  # the try's status -> its report
    went: dict[TryKey, float] = field(default_factory=dict)  # the try's go (its log's `starting task` line)

    def event_time(self, event_id: str) -> float | None:
        event = self.events.get(event_id)
        return event.create_time.timestamp() if event is not None and event.create_time is not None else None

    def first_event(self, execution_id: str, key: str) -> float | None:
        """When the first event of `key` sent by a task of the execution was appended."""
        times = [e.create_time.timestamp() for e in self.events.values()
                 if e.execution_id == execution_id and e.key == key and e.create_time is not None]
        return min(times) if times else None

    def report(self, key: TryKey, status: str) -> float | None:
        return self.reports.get(key, {}).get(status)

    def ended(self, key: TryKey) -> float | None:
        """The try's final report (SUCCESS, FAILED or STOPPED)."""
        times = [t for s, t in self.reports.get(key, {}).items() if s in ("SUCCESS", "FAILED", "STOPPED")]
        return min(times) if times else None


def read_timeline(config: Config, timeout: float = 60.0) -> Timeline:
    """The timeline of the records now committed in the prefix's events, inbox and tasks topics."""
    timeline = Timeline()
    for role in (topics.EVENTS, topics.INBOX, topics.TASKS):
        for msg in _read_all(config, topics.name(config, role), timeout):
            seconds = msg.timestamp()[1] / 1000
            try:
                if role == topics.EVENTS:
                    event = Event.from_record(msg)
                    timeline.events.setdefault(event.event_id, event)
                elif role == topics.TASKS:
                    command = TaskCommand.from_record(msg)
                    timeline.commands.setdefault(command.try_key, seconds)
                else:
                    _inbox(timeline, InboxMessage.from_record(msg), seconds)
            except DecodeError:
                continue
    timeline.went = read_goes(config.home / "logs")
    return timeline


GO_LINE = " INFO aiflow.task: starting task "  # what the task runner logs once the try may run


def read_goes(logs: Path) -> dict[TryKey, float]:
    """Each try's go, from the first `starting task` line of its log file under `logs`."""
    goes: dict[TryKey, float] = {}
    for path in logs.glob("*/*/*/*.log"):
        if not path.stem.isdigit():
            continue
        with open(path, errors="replace") as f:
            for line in f:
                if GO_LINE in line:
                    try:
                        stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")  # logging's asctime: local
                    except ValueError:  # not the runner's own format: no go known for this try
                        break
                    goes[(path.parent.parent.name, path.parent.name, int(path.stem))] = stamp.timestamp()
                    break
    return goes


def _inbox(timeline: Timeline, message: InboxMessage, seconds: float) -> None:
    if message.kind == InboxKind.EVENT and message.event is not None:
        timeline.routed.setdefault(message.event.event_id, seconds)
    elif message.kind == InboxKind.COMMAND and message.command == Command.START_EXECUTION and message.execution_id:
        timeline.started.setdefault(message.execution_id, seconds)
    elif message.kind == InboxKind.TASK_STATUS and message.report is not None:
        r = message.report
        timeline.reports.setdefault((r.execution_id, r.task, r.try_number), {}).setdefault(r.status or "", seconds)


def _read_all(config: Config, topic: str, timeout: float) -> list[Message]:
    """Every committed record of the topic, from the beginning to the end of each partition, once no
    transaction is open in it (a read_committed reader stops at the first open one's first record: a
    transaction left open by a process that stopped is aborted by the broker after its timeout)."""
    reader = clients.consumer(config, role="bench-timeline", settings={"enable.partition.eof": True})
    everything = clients.consumer(config, role="bench-timeline-uncommitted", read_committed=False)
    try:
        partitions = [TopicPartition(topic, p) for p in reader.list_topics(topic, timeout=10).topics[topic].partitions]
        deadline = time.monotonic() + timeout
        while any(reader.get_watermark_offsets(tp, timeout=10)[1] < everything.get_watermark_offsets(tp, timeout=10)[1]
                  for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} still has an open transaction after {timeout:.0f} s")
            time.sleep(0.2)
        reader.assign([TopicPartition(topic, tp.partition, OFFSET_BEGINNING) for tp in partitions])
        at_end: set[int] = set()
        found: list[Message] = []
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end in {timeout:.0f} s")
            for msg in reader.consume(1000, timeout=0.5):
                error = msg.error()
                if error is None:
                    at_end.discard(msg.partition() or 0)
                    found.append(msg)
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
        return found
    finally:
        everything.close()
        reader.close()


# The stages of event -> callable and of a start_after hop, each ending at a record's timestamp, at the
# try's go, or at a mark the task writes: the workflow file's first line (LOADED), the callable's first statement.
EVENT_STAGES = ["send", "route", "decide", "command", "held", "start", "call"]
HOP_STAGES = ["report", "decide", "command", "held", "start", "call"]


def event_stages(timeline: Timeline, sent: float, event_id: str, key: TryKey, loaded: float,
                 started: float) -> list[float | None]:
    """The EVENT_STAGES of the try `key` started by the event `event_id`, sent at `sent`."""
    return durations([sent, timeline.event_time(event_id), timeline.routed.get(event_id), timeline.commands.get(key),
                      timeline.report(key, "RUNNING"), timeline.went.get(key), loaded, started])


def hop_stages(timeline: Timeline, ended: float, done: TryKey, key: TryKey, loaded: float,
               started: float) -> list[float | None]:
    """The HOP_STAGES from the end of the callable of try `done` to the start of the callable of try `key`."""
    return durations([ended, timeline.report(done, "SUCCESS"), timeline.commands.get(key),
                      timeline.report(key, "RUNNING"), timeline.went.get(key), loaded, started])


def durations(marks: list[float | None]) -> list[float | None]:
    """The durations between consecutive marks (None where either mark is missing)."""
    return [b - a if a is not None and b is not None else None for a, b in zip(marks, marks[1:], strict=False)]


def stage_figures(rows: list[list[float | None]], names: list[str]) -> dict[str, float]:
    """From one row of stage durations (seconds) per sample: each stage's median and p95 in ms, as
    `NAME_p50_ms` and `NAME_p95_ms`, over the samples in which it is known."""
    figures: dict[str, float] = {}
    for index, name in enumerate(names):
        values = sorted(value * 1000 for row in rows if (value := row[index]) is not None)
        if values:
            figures[f"{name}_p50_ms"] = statistics.median(values)
            figures[f"{name}_p95_ms"] = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return figures


def stage_lines(rows: list[list[float | None]], figures: dict[str, float], names: list[str],
                total_p50_ms: float) -> list[str]:
    """Lines under a row: each stage's p50 / p95, how the medians add up against the total's median,
    and in how many samples every stage was found."""
    parts = [f"{n} {figures[f'{n}_p50_ms']:.1f} / {figures[f'{n}_p95_ms']:.1f}" for n in names
             if f"{n}_p50_ms" in figures]
    summed = sum(figures.get(f"{n}_p50_ms", 0.0) for n in names)
    complete = sum(all(value is not None for value in row) for row in rows)
    return ["stages, p50 / p95 ms (Kafka record timestamps: 1 ms resolution): " + " | ".join(parts),
            f"the stage medians add up to {summed:.1f} ms, the total's median is {total_p50_ms:.1f} ms; "
            f"every stage found in {complete} of {len(rows)} samples"]
