"""aiflow's benchmarks, against the targets in benchmarks/README.md:
`python benchmarks/run.py [--quick] [--compare EARLIER.json] [--kafka-property NAME=VALUE] [NAME ...]`.

Starts what it needs on loopback — a local broker in a temporary aiflow home, and scheduler and
worker processes — runs each benchmark, stops everything, prints a table and writes
benchmarks/results.json (the rows of the benchmarks that ran replace theirs; the others' rows stay, each
with the date of its run). Each benchmark's docstring says how it measures. NAME is one of:
event_latency, hop_latency, routing, task_throughput, failover, memory, restore, send_events, tutorial,
try_growth, cli, idle.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Next to this file: benchmarks/lab.py, timeline.py and the benchmarks in files of their own.
import broker_profile
import request_log
import send_events as send_events_bench
import transaction as transaction_bench
import try_growth as try_growth_bench
import tutorial as tutorial_bench
from lab import (
    AIFLOW,
    IDLE_SETTLE_S,
    REPO,
    Lab,
    Result,
    free_port,
    marking_workflow,
    percentile,
    start_many,
    wait_until,
)
from timeline import EVENT_STAGES, HOP_STAGES, event_stages, hop_stages, read_timeline, stage_figures, stage_lines

from aiflow import EventClient, ops
from aiflow.config import KAFKA_PROPERTY_ENV_PREFIX, Config
from aiflow.kafka import clients, sending, topics
from aiflow.kafka.local_broker import REQUEST_LOG_LEVEL_ENV, LocalBroker
from aiflow.protocol.messages import WorkflowDefinition
from aiflow.protocol.records import inbox_partition


def event_latency(lab: Lab, quick: bool) -> Result:
    """External event -> the task's callable running. An event is sent with `send_event` (durable on
    return); the callable writes time.time() first thing. Sequential: the next event is sent once the
    previous try ended, so every event starts a try. Latency = callable start - send start.

    Stages, each to the next one's start (timeline.py): send (the client: encode, produce, the broker's
    append, by its clock); route (the router's fetch, lookup and produce of the inbox EVENT); decide (the
    router's commit, the scheduler's fetch and decision, its produce of the START command); command (the
    scheduler's commit, the worker's fetch and its produce of the RUNNING report, which precedes the
    fork); held (the worker asks its fork server for the try, which forks it and holds it; the worker's
    commit of RUNNING and the command's offset; its go to the try, which logs `starting task`); start
    (the runner up to the workflow file's first line, which notes the time); call (the rest of the file:
    its imports and the Workflow, then the runner finds the task and calls the callable)."""
    config = lab.config()
    marks = lab.dir / "event_marks"
    marks.mkdir(exist_ok=True)
    lab.upload(config, marking_workflow("latency", marks), "latency")
    lab.start_services(slots=4)
    execution_id = ops.start_workflow_execution("latency", config=config, wait=60)
    n = 30 if quick else 200
    sends = []  # (send start, send_event's return, the event as stored, file loaded, callable start)
    with EventClient(config) as client:
        for i in range(1, n + 1):
            sent = time.time()
            event = client.send_event("bench")
            returned = time.time()
            wait_until(_written, 60, "a try", marks / str(i))
            loaded, started = (float(x) for x in (marks / str(i)).read_text().split())
            sends.append((sent, returned, event, loaded, started))
            wait_until(_try_done, 60, "the try to end", config, execution_id, i)
    ops.stop_workflow_execution(execution_id, config=config)
    lab.stop_processes()
    timeline = read_timeline(config)
    ms = [(started - sent) * 1000 for sent, _, _, _, started in sends]
    rows = [event_stages(timeline, sent, event.event_id, (execution_id, "react", i), loaded, started)
            for i, (sent, _, event, loaded, started) in enumerate(sends, start=1)]
    p50, p99 = statistics.median(ms), percentile(ms, 99)
    extra = stage_figures(rows, EVENT_STAGES)
    calls = [(returned - sent) * 1000 for sent, returned, _, _, _ in sends]
    extra.update({"send_event_call_p50_ms": statistics.median(calls), "send_event_call_p95_ms": percentile(calls, 95)})
    return Result("event -> callable running", "ms", p50, percentile(ms, 95), p99, n, "p50 <= 15, p99 <= 60",
                  p50 <= 15 and p99 <= 60, event_latency.__doc__ or "", extra,
                  stage_lines(rows, extra, EVENT_STAGES, p50))


def _written(path: Path) -> bool:
    return path.exists() and path.read_text() != ""


def _status_is(config: Config, execution_id: str, status: str) -> bool:
    info = ops.get_workflow_execution(execution_id, config=config)
    return info is not None and info.status == status


def _all_succeeded(config: Config, workflow: str) -> bool:
    return all(e.status == "SUCCESS" for e in ops.list_workflow_executions(workflow, config=config))


def _has_task(config: Config, execution_id: str, task: str) -> bool:
    return any(t.task == task for t in ops.list_task_executions(execution_id, config=config))


def _try_done(config: Config, execution_id: str, number: int) -> bool:
    tries = [t for t in ops.list_task_executions(execution_id, config=config) if t.task == "react"]
    return len(tries) >= number and tries[number - 1].status in ("SUCCESS", "FAILED")


def hop_latency(lab: Lab, quick: bool) -> Result:
    """start_after hop: a chain of 20 PythonOperators, each `start_after` the previous. Each callable
    writes its start and end time; hop = start of task i+1 - end of task i (the SUCCESS report, the
    decision, the START command, the worker's spawn and the task process's start).

    Stages, each to the next one's start (timeline.py): report (the callable's return, the task
    process's exit, the worker noticing it and producing the SUCCESS report to the inbox); decide (the
    worker's commit, the scheduler's fetch and decision, its produce of the next START command); command,
    held, start and call as in event_latency."""
    config = lab.config()
    marks = lab.dir / "hop_marks"
    marks.mkdir(exist_ok=True)
    length = 8 if quick else 20
    lab.upload(config, f"""
import time
LOADED = time.time()  # the workflow file's first line, run in the task's process
import os
from aiflow import Workflow, PythonOperator

def mark():
    started = time.time()
    path = os.path.join({str(marks)!r}, os.environ["AIFLOW_EXECUTION_ID"] + "-" + os.environ["AIFLOW_TASK"])
    open(path + ".start", "w").write(f"{{LOADED!r}} {{started!r}}")
    open(path + ".end", "w").write(repr(time.time()))

with Workflow(name="hops"):
    previous = None
    for i in range({length}):
        task = PythonOperator(name=f"t{{i}}", python_callable=mark)
        if previous is not None:
            task.start_after(previous)
        previous = task
""", "hops")
    lab.start_services(slots=2)
    runs = 1 if quick else 2
    hops = []  # (execution, task i, its end, task i+1's file loaded, its start)
    for _ in range(runs):
        execution_id = ops.start_workflow_execution("hops", config=config, wait=60)
        wait_until(_status_is, 300, "the chain", config, execution_id, "SUCCESS")
        for i in range(length - 1):
            end = float((marks / f"{execution_id}-t{i}.end").read_text())
            loaded, start = (float(x) for x in (marks / f"{execution_id}-t{i + 1}.start").read_text().split())
            hops.append((execution_id, i, end, loaded, start))
    lab.stop_processes()
    timeline = read_timeline(config)
    ms = [(start - end) * 1000 for _, _, end, _, start in hops]
    rows = [hop_stages(timeline, end, (execution_id, f"t{i}", 1), (execution_id, f"t{i + 1}", 1), loaded, start)
            for execution_id, i, end, loaded, start in hops]
    p50 = statistics.median(ms)
    extra = stage_figures(rows, HOP_STAGES)
    return Result("start_after hop", "ms", p50, percentile(ms, 95), percentile(ms, 99), len(ms), "p50 <= 20",
                  p50 <= 20, hop_latency.__doc__ or "", extra, stage_lines(rows, extra, HOP_STAGES, p50))


ROUTING_WORKFLOWS = (100, 10_000, 100_000)
ROUTING_TARGET = 50_000.0  # events/s, at every number of workflows
ROUTING_FLAT = 0.8  # "flat": the lowest rate at least this fraction of the highest


def routing(lab: Lab, quick: bool) -> Result:
    """Events routed per second by one router: W workflow definitions, each listening to its own key,
    are published; then E events with keys spread over the W keys are written, and a router in this
    process is timed from its first to its last routed event (consume, index lookup, produce to the
    inbox, commit — in transactions). Run for 100, 10,000 and 100,000 workflows: the lookup is a dict,
    so the rate should not fall with W. The figure is the lowest of the three rates; flat means the
    lowest is at least 80 % of the highest (the runs differ by a few % from noise alone)."""
    from aiflow.scheduler.router import Router

    rates: dict[int, float] = {}
    detail = []
    n_events = 20_000 if quick else 100_000
    for workflows in ROUTING_WORKFLOWS:
        config = lab.config()
        began = time.monotonic()
        publish_definitions(config, workflows)
        published = time.monotonic()
        producer_client = EventClient(config)
        keys = [f"key-{i % workflows}" for i in range(n_events)]
        for chunk in range(0, n_events, 5000):
            producer_client.send_events([(k, None) for k in keys[chunk:chunk + 5000]])
        producer_client.close()
        router = Router(config)
        caught_up = time.monotonic()
        router.definitions.catch_up()
        caught_up = time.monotonic() - caught_up
        routed = 0
        started = None
        deadline = time.monotonic() + 600
        while routed < n_events and time.monotonic() < deadline:
            count = router.step()
            if count and started is None:
                started = time.monotonic()
            routed += count
        elapsed = time.monotonic() - (started or time.monotonic())
        router.loop.close()
        router.definitions.close()
        rates[workflows] = routed / elapsed if elapsed else 0.0
        detail.append(f"W = {workflows:,}: {rates[workflows]:,.0f} events/s; publishing the definitions took "
                      f"{published - began:.1f} s, the router's catch-up on them {caught_up:.1f} s")
    lowest = min(rates.values())
    flat = lowest >= ROUTING_FLAT * max(rates.values())
    return Result("events routed per second (lowest of 100, 10,000, 100,000 workflows)", "events/s", lowest, None,
                  None, n_events, f">= {ROUTING_TARGET:,.0f}, flat", lowest >= ROUTING_TARGET and flat,
                  routing.__doc__ or "",
                  {**{f"rate_{w}_workflows": rate for w, rate in rates.items()},
                   "lowest_over_highest": lowest / max(rates.values())}, detail)


def publish_definitions(config: Config, count: int) -> None:
    """`count` workflow definitions, each listening to its own key, in one batch of records."""
    producer = clients.producer(config, role="bench")
    for i in range(count):
        definition = WorkflowDefinition(namespace="default", workflow=f"w{i}", version=1, snapshot_uri="file:///none",
                                        snapshot_sha256="0" * 64, workflow_file="w.py",
                                        rule_keys=(("default", f"key-{i}"),))
        sending.produce(producer, config, definition.to_record())
        producer.poll(0)
    producer.flush(60)


def task_throughput(lab: Lab, quick: bool) -> Result:
    """No-op task executions completed per second by one worker: an execution of a workflow with N
    tasks of the base Operator (which does nothing) and no rules, so all are queued at once; the
    rate is N / (time from the start command to the execution's SUCCESS). With 2 and 8 slots; the
    figure is the rate with 8."""
    rates = {}
    n = 40 if quick else 150
    for slots in (2, 8):
        config = lab.config()
        lab.upload(config, f"""
from aiflow import Workflow, Operator
with Workflow(name="noops"):
    for i in range({n}):
        Operator(f"t{{i}}")
""", "noops")
        lab.start_services(slots=slots)
        ops.start_workflow_execution("noops", config=config, wait=60)  # warm up: loads, group joins
        wait_until(_all_succeeded, 600, "warm-up", config, "noops")
        started = time.monotonic()
        execution_id = ops.start_workflow_execution("noops", config=config, wait=0)
        wait_until(_status_is, 900, "the no-op tasks", config, execution_id, "SUCCESS")
        rates[slots] = n / (time.monotonic() - started)
        lab.stop_processes()
    # The issue's target is for one worker with 8 slots; the 2-slot rate shows how it scales with slots.
    return Result("no-op task executions per second, one worker", "tries/s", rates[8], None, None, n,
                  ">= 300 (8 slots)", rates[8] >= 300, task_throughput.__doc__ or "",
                  {"slots_2": rates[2], "slots_8": rates[8]})


def failover(lab: Lab, quick: bool) -> Result:
    """Two schedulers share the inbox partitions; the one owning a workflow is SIGKILLed and an event
    for that workflow is sent at once. Time = the new try's queued-time (in the changelog) minus the
    moment of the kill. Client session timeout 3 s, transaction timeout 5 s (the local broker allows
    them; the broker defaults allow 45-60 s). The target holds for each run: the slowest of three."""
    samples = []
    for _ in range(1 if quick else 3):
        config = lab.config()
        lab.upload(config, """
from aiflow import Workflow, BashOperator, TaskAction
with Workflow(name="moved"):
    BashOperator(name="keepalive", bash_command="sleep 100000")
    BashOperator(name="react", bash_command="true").action_on_event_received(TaskAction.START, "poke")
""", "moved")
        schedulers = [lab.spawn("scheduler", "start"), lab.spawn("scheduler", "start")]
        logs = [lab.log_of(p) for p in schedulers]
        lab.spawn("worker", "start")
        partition = inbox_partition("default/moved", topics.partition_count(config, topics.INBOX))

        wait_until(_shared, 60, "two schedulers", logs, partition)
        execution_id = ops.start_workflow_execution("moved", config=config, wait=30)
        victim = _owner(logs, partition)
        assert victim is not None
        schedulers[victim].send_signal(signal.SIGKILL)
        killed = time.time()
        with EventClient(config) as client:
            client.send_event("poke")
        wait_until(_has_task, 120, "the decision", config, execution_id, "react")
        [react] = [t for t in ops.list_task_executions(execution_id, config=config) if t.task == "react"]
        assert react.begin_date is not None
        samples.append(react.begin_date.timestamp() - killed)
        lab.stop_processes()
    p50 = statistics.median(samples)
    # Every run within the bound: a failover that sometimes takes longer does not meet "<= 5 s".
    return Result("failover: SIGKILL -> next decision", "s", p50, None, max(samples), len(samples),
                  "<= 5 (each run)", max(samples) <= 5, failover.__doc__ or "")


def _owner(logs: list[Path], partition: int) -> int | None:
    for index, log in enumerate(logs):
        found = re.findall(r"scheduler: assigned partitions \[([0-9, ]*)\]", log.read_text())
        if found and str(partition) in found[-1].split(", "):
            return index
    return None


def _shared(logs: list[Path], partition: int) -> bool:
    return _owner(logs, partition) is not None and all("assigned" in log.read_text() for log in logs)


def memory(lab: Lab, quick: bool) -> Result:
    """RSS of the scheduler and of an idle worker with N active executions: a workflow whose one task
    waits for an event that never comes, so every execution stays RUNNING with no try; N executions
    are started, then the processes' VmRSS is read from /proc."""
    config = lab.config()
    lab.upload(config, """
from aiflow import Workflow, BashOperator, TaskAction
with Workflow(name="idle"):
    BashOperator(name="never", bash_command="true").action_on_event_received(TaskAction.START, "never")
""", "idle")
    scheduler, worker = lab.start_services()
    n = 1000 if quick else 10_000
    ops.start_workflow_execution("idle", config=config, wait=60)
    start_many(config, "idle", n - 1)
    wait_until(_at_least, 1800, "the executions", config, "idle", n)
    rss = {name: _rss(p.pid) for name, p in (("scheduler", scheduler), ("worker", worker))}
    lab.stop_processes()
    return Result(f"scheduler RSS with {n} active executions", "MB", rss["scheduler"], None, None, n, "<= 200",
                  rss["scheduler"] <= 200, memory.__doc__ or "", {"worker_rss_mb": rss["worker"]})


def _at_least(config: Config, workflow: str, n: int) -> bool:
    return len(ops.list_workflow_executions(workflow, config=config)) >= n


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def restore(lab: Lab, quick: bool) -> Result:
    """A scheduler's restore of its state partitions (benchmarks/restore.py says how it is measured)."""
    import restore as restore_bench  # benchmarks/restore.py, next to this file

    figures = restore_bench.measure(lab.config(), quick)
    seconds = figures["restore_s"]
    return Result("scheduler restore, 100,000 settled executions" if not quick else "scheduler restore (quick)",
                  "s", seconds, None, None, figures["records"], f"<= {restore_bench.TARGET_S:.0f}",
                  seconds <= restore_bench.TARGET_S, (restore_bench.__doc__ or "").split("\n\n")[1],
                  {"read_and_decode_every_key_s": figures["read_and_decode_every_key_s"]})


# The issue's figures for the same commands (median of 5 whole processes, `aiflow standalone` running).
ISSUE_MS = {"--version": 207.0, "upload quickstart": 1340.0, "start": 1049.0, "list": 692.0}
CLI_TARGET_MS = 300.0
TUTORIAL_UPLOAD_TARGET_MS = 1500.0


def cli(lab: Lab, quick: bool) -> list[Result]:
    """Whole `aiflow` processes as a user types them, with a scheduler and a worker running (SQLite
    store): wall time from the spawn to the exit of `aiflow --version`, `workflow upload` of the
    quickstart and of the tutorial (with its dataset: the upload imports the file, so scikit-learn),
    `workflow-execution start quickstart` (as the command is: since 12f09aa it returns once Kafka holds
    the start command), `workflow-execution list quickstart` and `task-execution list ID`. One warm-up
    run, then the median, min and max of 5 (3 with --quick); after each start the execution is left to
    end before the next run.
    Bytecode is cached as in an installed package (PYTHONDONTWRITEBYTECODE is dropped). The import
    times of `workflow-execution list` (`PYTHONPROFILEIMPORTTIME=1`, like `python -X importtime`) are
    printed under its row."""
    config = lab.config()
    lab.spawn("scheduler", "start")
    lab.spawn("worker", "start")
    env = {k: v for k, v in lab.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    tutorial = lab.dir / "tutorial"
    tutorial.mkdir(exist_ok=True)
    shutil.copy(REPO / "samples" / "online_machine_learning" / "online_ml_workflow.py", tutorial)
    subprocess.run([sys.executable, str(REPO / "samples" / "online_machine_learning" / "make_dataset.py"),
                    str(tutorial / "dataset")], env=env, check=True, capture_output=True)
    runs = 3 if quick else 5
    started: list[str] = []

    def execution_ended(output: str) -> None:
        found = re.search(r"Workflow execution: (\S+) submitted", output)
        if found is None:
            raise RuntimeError(f"no execution id in {output!r}")
        started.append(found.group(1))
        try:
            wait_until(_ended, 60, "the quickstart execution", config, found.group(1))
        except TimeoutError:
            ops.stop_workflow_execution(found.group(1), config=config)

    def row(name: str, args: list[str], target_ms: float | None, issue: str | None = None, cwd: Path | None = None,
            after: Callable[[str], None] | None = None) -> Result:
        walls = [_wall(args, env, cwd, after) for _ in range(runs + 1)][1:]
        p50 = statistics.median(walls)
        extra = {"min_ms": min(walls), "max_ms": max(walls)}
        if issue is not None:
            extra["issue_ms"] = ISSUE_MS[issue]
        return Result(f"cli: aiflow {name}", "ms", p50, None, None, runs,
                      f"<= {target_ms:.0f}" if target_ms is not None else "-",
                      p50 <= target_ms if target_ms is not None else None, cli.__doc__ or "", extra)

    quickstart = str(REPO / "samples" / "quickstart" / "quickstart_workflow.py")
    results = [
        row("--version", ["--version"], None, "--version"),
        row("workflow upload (quickstart)", ["workflow", "upload", quickstart], None, "upload quickstart"),
        row("workflow upload (tutorial, with its dataset)",
            ["workflow", "upload", "online_ml_workflow.py", "--files", "dataset"], TUTORIAL_UPLOAD_TARGET_MS,
            cwd=tutorial),
        row("workflow-execution start", ["workflow-execution", "start", "quickstart"], CLI_TARGET_MS, "start",
            after=execution_ended),
        row("workflow-execution list", ["workflow-execution", "list", "quickstart"], CLI_TARGET_MS, "list"),
        row("task-execution list", ["task-execution", "list", started[-1]], CLI_TARGET_MS),
    ]
    results[4].detail = _import_times([*AIFLOW, "workflow-execution", "list", "quickstart"], env)
    lab.stop_processes()
    return results


def _ended(config: Config, execution_id: str) -> bool:
    info = ops.get_workflow_execution(execution_id, config=config)
    return info is not None and info.status not in ("INIT", "RUNNING")


def _wall(args: list[str], env: dict[str, str], cwd: Path | None, after: Callable[[str], None] | None) -> float:
    """Milliseconds from the spawn of `aiflow ARGS` to its exit; `after` gets its output, untimed."""
    began = time.perf_counter()
    done = subprocess.run([*AIFLOW, *args], env=env, cwd=cwd, capture_output=True, text=True)
    wall = (time.perf_counter() - began) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"aiflow {' '.join(args)} exited with {done.returncode}: {done.stderr[-2000:]}")
    if after is not None:
        after(done.stdout + done.stderr)
    return wall


def _import_times(command: list[str], env: dict[str, str], top: int = 10) -> list[str]:
    """The `top` modules by cumulative import time of one run of `command` (PYTHONPROFILEIMPORTTIME)."""
    done = subprocess.run(command, env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True, text=True)
    rows = []  # (cumulative us, self us, module, depth)
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            rows.append((int(found.group(2)), int(found.group(1)), found.group(4), (len(found.group(3)) - 1) // 2))
    total = sum(cumulative for cumulative, _, _, depth in rows if depth == 0)
    lines = [f"imports: {total / 1000:.0f} ms in all, {len(rows)} modules; the top {top} by cumulative time:"]
    for cumulative, own, module, depth in sorted(rows, reverse=True)[:top]:
        lines.append(f"  {cumulative / 1000:7.1f} ms  (self {own / 1000:5.1f})  {module}"
                     + (f"  [imported at depth {depth}]" if depth else ""))
    return lines


def idle(lab: Lab, quick: bool) -> Result:
    """`aiflow standalone` with nothing to do, as users start it (the web server included; its own
    broker in a fresh aiflow home, default settings; the lab's broker is stopped meanwhile). After
    it is ready and 20 s of settling, the CPU time (utime + stime in /proc/PID/stat, every thread) of
    every process of its tree — the broker's JVM, and the aiflow services: the standalone process
    and the worker's fork server — is read every 5 s for 60 s (10 s and 20 s with --quick). Figure:
    % of one core of the whole tree, median of the 5 s windows; the extras split the 60 s mean into
    broker and services and give each one's PSS (/proc/PID/smaps_rollup) at the end."""
    lab.stop_broker()
    home = lab.dir / "idle-home"
    env = {k: v for k, v in lab.env.items() if not k.startswith("AIFLOW_") or k.startswith(KAFKA_PROPERTY_ENV_PREFIX)}
    env.update({"AIFLOW_HOME": str(home), "AIFLOW_BROKER_PORT": str(free_port()),
                "AIFLOW_BROKER_CONTROLLER_PORT": str(free_port()), "AIFLOW_WEBSERVER_PORT": str(free_port()),
                "AIFLOW_METRICS_SCHEDULER_PORT": str(free_port()), "AIFLOW_METRICS_WORKER_PORT": str(free_port())})
    settle, window, step = (10.0, 20.0, 5.0) if quick else (lab.idle_settle, 60.0, 5.0)
    standalone = lab.spawn("standalone", env=env)
    try:
        wait_until(_ready, 180, "aiflow standalone", standalone, home / "run" / "standalone.status")
        time.sleep(settle)
        snapshots = [_cpu_snapshot(standalone.pid)]
        while len(snapshots) <= window / step:
            time.sleep(max(0.0, step - (time.monotonic() - snapshots[-1].taken)))
            if standalone.poll() is not None:
                raise RuntimeError(f"aiflow standalone exited with {standalone.returncode}: "
                                   f"see {lab.log_of(standalone)}")
            snapshots.append(_cpu_snapshot(standalone.pid))
        pss = {kind: sum(_pss(pid) for pid, k in snapshots[-1].kinds.items() if k == kind)
               for kind in ("broker", "services")}
    finally:
        lab.stop_processes()
        LocalBroker(Config.load(home=home, environ=env)).stop(timeout=5)
    windows = [b.percent_of_core(a) for a, b in zip(snapshots, snapshots[1:], strict=False)]
    totals = [sum(w.values()) for w in windows]
    whole = snapshots[-1].percent_of_core(snapshots[0])
    p50 = statistics.median(totals)
    threads = snapshots[-1].threads_percent(snapshots[0])
    detail = [f"{window:.0f} s after {settle:.0f} s of settling; the busiest threads (% of one core, "
              f"{window:.0f} s mean; digits in names as N):"]
    detail += [f"  {percent:5.2f} %  {kind:8} {name}" for (kind, name), percent in threads[:10]]
    jit = sum(percent for (kind, name), percent in threads if kind == "broker" and "CompilerThre" in name)
    return Result("idle standalone: CPU of all its processes", "%", p50, percentile(totals, 95),
                  percentile(totals, 99), len(totals), "<= 2", p50 <= 2, idle.__doc__ or "",
                  {"total_mean_pct": sum(whole.values()), "broker_pct": whole["broker"],
                   "broker_jit_compiler_pct": jit, "services_pct": whole["services"],
                   "broker_pss_mb": pss["broker"], "services_pss_mb": pss["services"],
                   # one "rdk:main" thread per librdkafka client: each consumer keeps a fetch waiting at the broker
                   "kafka_clients": sum(name == "rdk:main" for name, _ in snapshots[-1].ticks.values())}, detail)


def _ready(process: subprocess.Popen[bytes], status_file: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"aiflow standalone exited with {process.returncode} while starting")
    return status_file.exists() and status_file.read_text().strip() == "ready"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class CpuSnapshot:
    """CPU ticks of every thread of a process tree at one moment, each process marked broker or services."""

    taken: float
    kinds: dict[int, str]  # pid -> "broker" | "services"
    ticks: dict[tuple[int, int], tuple[str, int]]  # (pid, tid) -> (thread name, utime + stime)

    def percent_of_core(self, before: CpuSnapshot) -> dict[str, float]:
        """% of one core used by the broker and by the services between `before` and this snapshot (a
        thread born in between counts from 0; one that ended in between is not counted)."""
        used = {"broker": 0, "services": 0}
        for key, (_, ticks) in self.ticks.items():
            used[self.kinds[key[0]]] += ticks - before.ticks.get(key, ("", 0))[1]
        return {kind: 100 * t / CLOCK_TICKS / (self.taken - before.taken) for kind, t in used.items()}

    def threads_percent(self, before: CpuSnapshot) -> list[tuple[tuple[str, str], float]]:
        """% of one core by thread name (digits dropped: a pool is one line), busiest first."""
        used: dict[tuple[str, str], int] = {}
        for key, (name, ticks) in self.ticks.items():
            group = (self.kinds[key[0]], re.sub(r"[0-9]+", "N", name))
            used[group] = used.get(group, 0) + ticks - before.ticks.get(key, ("", 0))[1]
        seconds = self.taken - before.taken
        return sorted(((g, 100 * t / CLOCK_TICKS / seconds) for g, t in used.items()), key=lambda x: -x[1])


def _cpu_snapshot(root: int) -> CpuSnapshot:
    taken = time.monotonic()
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    kinds: dict[int, str] = {}
    ticks: dict[tuple[int, int], tuple[str, int]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            broker = b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
            for task in os.scandir(f"/proc/{pid}/task"):
                stat = Path(f"/proc/{pid}/task/{task.name}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                ticks[(pid, int(task.name))] = (stat[stat.index("(") + 1:stat.rindex(")")],
                                                int(fields[11]) + int(fields[12]))
        except OSError:  # ended meanwhile
            continue
        kinds[pid] = "broker" if broker else "services"
    return CpuSnapshot(taken, kinds, {k: v for k, v in ticks.items() if k[0] in kinds})


def _pss(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


BENCHMARKS: dict[str, Callable[[Lab, bool], Result | list[Result]]] = {
    "event_latency": event_latency, "hop_latency": hop_latency, "transaction": transaction_bench.transaction,
    "routing": routing,
    "task_throughput": task_throughput, "failover": failover, "memory": memory, "restore": restore,
    "send_events": send_events_bench.send_events, "tutorial": tutorial_bench.tutorial,
    "try_growth": try_growth_bench.try_growth, "cli": cli, "idle": idle,
}
# Within this many percent of the earlier figure, --compare says "same"; beyond WORSE_PCT it flags a regression.
SAME_PCT, WORSE_PCT = 2.0, 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results.json"))
    parser.add_argument("--compare", metavar="FILE", type=Path,
                        help="an earlier results.json: print each figure's ratio against it after the table")
    parser.add_argument("--kafka-property", metavar="NAME=VALUE", action="append", default=[],
                        help="a librdkafka property for every client (as AIFLOW_KAFKA_PROPERTY_<NAME>; repeatable)")
    parser.add_argument("--request-log", action="store_true",
                        help="log every request the lab's broker serves and print where its time goes, by client "
                             "role and API (benchmarks/request_log.py); logging slows the broker")
    parser.add_argument("--broker-profile", metavar="FILE", type=Path,
                        help="record the lab's broker with Java Flight Recorder into FILE and print where its CPU "
                             "goes, by thread and method (benchmarks/broker_profile.py; needs jcmd and jfr)")
    parser.add_argument("--idle-settle", metavar="SECONDS", type=float, default=IDLE_SETTLE_S,
                        help=f"idle: seconds from the services' start to the measurement (default {IDLE_SETTLE_S:g})")
    args = parser.parse_args()
    earlier = json.loads(args.compare.read_text()) if args.compare else None  # read before --output is written
    properties = dict(p.split("=", 1) for p in args.kafka_property)
    if args.request_log:  # read by the broker's log4j2.properties, so set before the lab's broker starts
        os.environ[REQUEST_LOG_LEVEL_ENV] = "DEBUG"
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
               "load_before": [round(x, 2) for x in os.getloadavg()], "kafka_properties": properties,
               "commit": _commit(), "request_log": args.request_log,
               "broker_profile": str(args.broker_profile) if args.broker_profile else None,
               **({"idle_settle_s": args.idle_settle} if "idle" in (args.names or BENCHMARKS) else {})}
    lab = Lab(properties)
    lab.idle_settle = args.idle_settle
    lab.profile = args.broker_profile
    results: list[Result] = []
    broken: list[str] = []  # the benchmarks that raised, with their error: the others' figures are still written
    interrupted = True
    request_lines: list[str] = []
    try:
        for name in args.names or list(BENCHMARKS):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                result = BENCHMARKS[name](lab, args.quick)
            except Exception as exc:
                traceback.print_exc()
                broken.append(f"{name}: {type(exc).__name__}: {exc}")
                print(f"  FAILED after {time.monotonic() - started:.0f} s; going on with the others", file=sys.stderr,
                      flush=True)
                lab.stop_processes()  # what it left running; each benchmark starts the services it needs
                continue
            print(f"  done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            results.extend(result if isinstance(result, list) else [result])
        interrupted = False
        if args.request_log:
            request_lines = request_log.summary(lab.broker.log_file)
    finally:
        lab.close(keep=interrupted or bool(broken))
    machine["load_after"] = [round(x, 2) for x in os.getloadavg()]  # others' work during the run shows here
    write_results(Path(args.output), machine, results)
    width = max([48, *(len(r.name) for r in results)])
    print(f"\n{'benchmark':{width}} {'median':>10} {'p95':>9} {'p99':>9} {'n':>7}  {'target':22} ok")
    for r in results:
        p95 = f"{r.p95:.1f}" if r.p95 is not None else "-"
        p99 = f"{r.p99:.1f}" if r.p99 is not None else "-"
        print(f"{r.name:{width}} {r.median:>10.1f} {p95:>9} {p99:>9} {r.samples:>7}  {r.target + ' ' + r.unit:22} "
              f"{'-' if r.meets is None else 'yes' if r.meets else 'NO'}")
        for key, value in r.extra.items():
            print(f"    {key}: {value:.1f}")
        for line in r.detail:
            print(f"    {line}")
    if args.request_log:
        print("\n" + "\n".join(request_lines))
    if args.broker_profile:  # the broker has stopped (lab.close), so its recordings are written
        print("\n" + "\n".join(broker_profile.summary(lab.profiles)))
    if earlier is not None:
        print(f"\ncompared with {args.compare} ({earlier['machine'].get('date', 'undated')}):")
        for line in compare(results, earlier):
            print(line)
    print(f"\nresults written to {args.output}")
    if broken:
        print(f"\nFAILED, so not in the results (the lab's logs are kept in {lab.dir}):", file=sys.stderr)
        for line in broken:
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)


def _commit() -> str:
    """The checked-out commit, "-dirty" when the work tree has changes (the figures are of the work tree)."""
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


# Rows renamed (old name -> new name): the old row leaves results.json once the new one is written.
RENAMED_ROWS = {"events routed per second (10,000 workflows)":
                "events routed per second (lowest of 100, 10,000, 100,000 workflows)"}


def write_results(path: Path, machine: dict[str, object], results: list[Result]) -> None:
    """Write this run's rows in place of the same rows of the file, keeping the others (each row
    carries the date of the run it came from, and whether it was --quick)."""
    rows: dict[str, dict[str, object]] = {}
    if path.exists():
        try:
            before = json.loads(path.read_text())
        except ValueError:
            before = {}
        stamp = {"date": before.get("machine", {}).get("date"), "quick": before.get("machine", {}).get("quick")}
        rows = {row["name"]: {**stamp, **row} for row in before.get("results", [])}
    for r in results:
        rows[r.name] = {**asdict(r), "date": machine["date"], "quick": machine["quick"]}
    rows = {name: row for name, row in rows.items() if RENAMED_ROWS.get(name) not in rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, "results": list(rows.values())}, indent=2) + "\n")


def compare(results: list[Result], earlier: dict[str, Any]) -> list[str]:
    """One line per figure found in both runs: before -> now, the ratio now/before, and whether that is
    better (lower, or higher for rates); worse by more than WORSE_PCT is flagged."""
    before = {row["name"]: row for row in earlier.get("results", [])}
    lines = []
    for r in results:
        old = before.get(r.name)
        if old is None:
            lines.append(f"{r.name}: not in the earlier run")
            continue
        label = " p50" if r.p95 is not None or r.p99 is not None else ""
        figures = [(label, r.median, old.get("median"), r.unit), (" p95", r.p95, old.get("p95"), r.unit),
                   (" p99", r.p99, old.get("p99"), r.unit)]
        figures += [(f" {key}", value, old.get("extra", {}).get(key), "") for key, value in r.extra.items()
                    if not key.startswith(("issue_", "min_", "max_"))]  # a spread, or a fixed figure
        for name, now, then, unit in figures:
            if now is None or not then:
                continue
            ratio = now / then
            worse = ratio < 1 if r.unit.endswith("/s") else ratio > 1
            change = abs(ratio - 1) * 100
            verdict = "same" if change < SAME_PCT else "worse" if worse else "better"
            flag = f"   <<< WORSE by {change:.0f} %" if worse and change > WORSE_PCT else ""
            lines.append(f"{r.name}{name}: {then:,.1f} \u2192 {now:,.1f}{' ' + unit if unit else ''} "
                         f"({ratio:.2f}x, {verdict}){flag}")
    return lines


if __name__ == "__main__":
    threading.current_thread().name = "benchmarks"
    main()
