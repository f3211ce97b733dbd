"""Whether the cost of a try grows with what came before it: past executions, and past tries of the
same execution. Two measurements, each on a fresh topic prefix and SQLite store with its own `aiflow
scheduler` and `aiflow worker` (8 slots), each a ratio of the same figure after the history to before it.

Past executions: a workflow of one no-op task (the base Operator, no rules: queued at the start). A
round starts K = 100 executions at once (their START_EXECUTION commands through one producer) and its
rate is K / (the last try's final report - the first START_EXECUTION command), from the records'
timestamps (timeline.py). After a warm-up round: 3 rounds; then N = 2,000 more executions of the same
workflow, left to settle (every one SUCCESS in the store, so the projector has caught up); then 3
rounds again. Figure: the cost of a try after / before = the median rate before / the median rate after.

Past tries of one execution: the workflow of event_latency (a never-ending task keeps the execution
running; `react` starts on event `bench` and its callable writes time.time() first thing), plus 50
no-op tasks that start on event `past`. After one warm-up event, event -> callable latency of M = 30
sequential `bench` events (the next once the try's final report is committed to the inbox, so the
scheduler has seen it before the next event); then `past` events, each starting the 50 no-op tasks
once more, until the execution holds P = 1,000 more tries; then M `bench` events again. Figure: p50
after / p50 before. Before the first M, one `past` event runs every task once: the execution's kept
state (each task's latest try and the 20 most recently ended others) then has the same size before
and after, so what differs is the history alone. (--quick: K = 30, N = 200, M = 10, P = 200.)

Target: each ratio <= 1.2. A cost that does not grow gives 1.0 give or take the noise of these runs on
a shared 2-core machine (medians of the same figure differ by about 10 % between runs: README's
before-and-after table); a cost linear in the history would show far beyond 1.2 after thousands of
executions or tries (a state record of the execution re-encoded with every try, a query that scans
past executions). 1.2 does not catch a small logarithmic growth (an index's depth), which is not one
a user would see.
"""

from __future__ import annotations

import statistics
import time

from confluent_kafka import TopicPartition
from lab import Lab, Result, marking_workflow, start_many, wait_until
from timeline import EVENT_STAGES, Timeline, TryKey, event_stages, read_timeline, stage_figures, stage_lines

from aiflow import EventClient, ops
from aiflow.config import Config
from aiflow.errors import DecodeError
from aiflow.kafka import clients, topics
from aiflow.protocol.messages import InboxKind, InboxMessage

TARGET_RATIO = 1.2
ROUNDS = 3
PAST_TASKS = 50  # no-op tasks started by each `past` event


def try_growth(lab: Lab, quick: bool) -> list[Result]:
    return [past_executions(lab, quick), past_tries(lab, quick)]


def past_executions(lab: Lab, quick: bool) -> Result:
    k, past = (30, 200) if quick else (100, 2_000)
    config = lab.config()
    lab.upload(config, """
from aiflow import Workflow, Operator
with Workflow(name="growth"):
    Operator("t")
""", "growth")
    lab.start_services(slots=8)
    reports = Reports(config)
    started = 0

    def run(n: int) -> list[str]:
        nonlocal started
        ids = start_many(config, "growth", n)
        reports.wait([(i, "t", 1) for i in ids], 60 + n)
        started += n
        wait_until(_succeeded, 60 + n, "the store to hold the executions", config, started)
        return ids

    run(k)  # warm-up: the workflow's first load, the first forks
    before = [run(k) for _ in range(ROUNDS)]
    began = time.monotonic()
    run(past)
    past_seconds = time.monotonic() - began
    after = [run(k) for _ in range(ROUNDS)]
    reports.close()
    lab.stop_processes()
    timeline = read_timeline(config)
    rate_before = statistics.median(_rate(timeline, ids) for ids in before)
    rate_after = statistics.median(_rate(timeline, ids) for ids in after)
    ratio = rate_before / rate_after
    return Result(f"cost of a try after {past:,} past executions / fresh", "x", ratio, None, None, ROUNDS * k * 2,
                  f"<= {TARGET_RATIO}", ratio <= TARGET_RATIO, __doc__ or "",
                  {"tries_per_s_before": rate_before, "tries_per_s_after": rate_after},
                  [f"{ROUNDS} rounds of {k} executions of one no-op task, before and after {past:,} more "
                   f"({past / past_seconds:.0f} executions/s while they ran, settled in the store)"])


def _rate(timeline: Timeline, ids: list[str]) -> float:
    """Tries per second of a round: its executions / (the last one's try ended - the first one's start)."""
    first = min(timeline.started[i] for i in ids)
    last = max(timeline.ended((i, "t", 1)) or 0.0 for i in ids)
    return len(ids) / (last - first)


def _succeeded(config: Config, n: int) -> bool:
    """Whether the store holds at least n SUCCESS executions of the workflow."""
    return bool(ops.list_workflow_executions("growth", status="SUCCESS", limit=1, offset=n - 1, config=config))


def past_tries(lab: Lab, quick: bool) -> Result:
    m, past = (10, 200) if quick else (30, 1_000)
    config = lab.config()
    marks = lab.dir / "growth_marks"
    marks.mkdir(exist_ok=True)
    lab.upload(config, marking_workflow("tries", marks, f"""
    for i in range({PAST_TASKS}):
        Operator(f"p{{i}}").action_on_event_received(TaskAction.START, "past")
"""), "tries")
    lab.start_services(slots=8)
    reports = Reports(config)
    execution_id = ops.start_workflow_execution("tries", config=config, wait=60)
    with EventClient(config) as client:

        def bench(first: int, count: int) -> list[tuple[int, float, str, float, float]]:
            """(try number, send start, event id, file loaded, callable start) of `count` sequential tries."""
            sends = []
            for number in range(first, first + count):
                sent = time.time()
                event = client.send_event("bench")
                reports.wait([(execution_id, "react", number)], 60)
                loaded, started = (float(x) for x in (marks / str(number)).read_text().split())
                sends.append((number, sent, event.event_id, loaded, started))
            return sends

        def run_past(number: int) -> None:
            client.send_event("past")
            reports.wait([(execution_id, f"p{i}", number) for i in range(PAST_TASKS)], 120)

        bench(1, 1)  # warm-up: the workflow's first load in a task, the first fork
        # and every task once, so the execution's kept state (each task's latest try and the 20 most
        # recently ended others) has the same size before and after: what grows is the history alone.
        run_past(1)
        before = bench(2, m)
        for number in range(2, past // PAST_TASKS + 2):
            run_past(number)
        after = bench(2 + m, m)
    ops.stop_workflow_execution(execution_id, config=config)
    reports.close()
    lab.stop_processes()
    timeline = read_timeline(config)
    extra: dict[str, float] = {}
    detail = []
    for label, sends in (("before", before), ("after", after)):
        total = statistics.median((started - sent) * 1000 for _, sent, _, _, started in sends)
        rows = [event_stages(timeline, sent, event_id, (execution_id, "react", number), loaded, started)
                for number, sent, event_id, loaded, started in sends]
        stages = stage_figures(rows, EVENT_STAGES)
        extra[f"p50_{label}_ms"] = total
        extra[f"decide_p50_{label}_ms"] = stages.get("decide_p50_ms", 0.0)
        detail += [f"{label}: {line}" for line in stage_lines(rows, stages, EVENT_STAGES, total)]
    ratio = extra["p50_after_ms"] / extra["p50_before_ms"]
    tries = 2 + 2 * m + (past // PAST_TASKS + 1) * PAST_TASKS  # keepalive, warm-ups, before, past, after
    return Result(f"event -> callable after {past:,} past tries of its execution / fresh", "x", ratio, None, None,
                  2 * m, f"<= {TARGET_RATIO}", ratio <= TARGET_RATIO, __doc__ or "", extra,
                  [f"{m} sequential events before and after; the execution held {tries:,} tries at the end", *detail])


class Reports:
    """The tries whose final report (SUCCESS, FAILED, STOPPED) is committed to the inbox, read from the
    inbox's end as it was when this was made (read_committed)."""

    def __init__(self, config: Config) -> None:
        self.reader = clients.consumer(config, role="bench-reports")
        topic = topics.name(config, topics.INBOX)
        partitions = [TopicPartition(topic, p) for p in range(topics.partition_count(config, topics.INBOX))]
        self.reader.assign([TopicPartition(topic, tp.partition, self.reader.get_watermark_offsets(tp, timeout=10)[1])
                            for tp in partitions])
        self.ended: set[TryKey] = set()

    def wait(self, keys: list[TryKey], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ended.issuperset(keys):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(set(keys) - self.ended)} of {len(keys)} tries not ended after {timeout} s")
            for msg in self.reader.consume(1000, timeout=0.05):
                if msg.error() is not None:
                    continue
                try:
                    message = InboxMessage.from_record(msg)
                except DecodeError:
                    continue
                report = message.report
                if message.kind == InboxKind.TASK_STATUS and report is not None and \
                        report.status in ("SUCCESS", "FAILED", "STOPPED"):
                    self.ended.add((report.execution_id, report.task, report.try_number))

    def close(self) -> None:
        self.reader.close()
