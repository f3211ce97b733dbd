"""aiflow's benchmarks, against the targets in benchmarks/README.md: `python benchmarks/run.py [--quick] [NAME ...]`.

Starts what it needs on loopback — a local broker in a temporary aiflow home, and scheduler and
worker processes — runs each benchmark, stops everything, prints a table and writes
benchmarks/results.json. Each benchmark's docstring says how it measures. NAME is one of:
event_latency, hop_latency, routing, task_throughput, failover, memory, restore.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from aiflow import EventClient, ops
from aiflow.config import Config
from aiflow.kafka import clients, sending, topics
from aiflow.kafka.local_broker import LocalBroker
from aiflow.protocol.messages import Command, InboxMessage, WorkflowDefinition
from aiflow.protocol.records import inbox_partition

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    name: str
    unit: str
    median: float
    p95: float | None
    p99: float | None
    samples: int
    target: str
    meets: bool
    method: str
    extra: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A temporary aiflow home with its own broker, and helpers to start aiflow processes in it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aiflow-bench-"))
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")},
                    "AIFLOW_HOME": str(self.dir / "home"), "AIFLOW_BROKER_PORT": str(free_port()),
                    "AIFLOW_BROKER_CONTROLLER_PORT": str(free_port()),
                    "AIFLOW_KAFKA_SESSION_TIMEOUT_MS": "3000", "AIFLOW_KAFKA_TRANSACTION_TIMEOUT_MS": "5000"}
        self.base = Config.load(home=self.dir / "home", environ=self.env)
        self.broker = LocalBroker(self.base)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}

    def log_of(self, process: subprocess.Popen[bytes]) -> Path:
        return self._logs[process.pid]

    def start_broker(self) -> None:
        self.broker.start()

    def config(self) -> Config:
        """A fresh topic prefix on the lab's broker, with its topics."""
        prefix = f"b{uuid.uuid4().hex[:8]}"
        self.env["AIFLOW_TOPIC_PREFIX"] = prefix
        self.env["AIFLOW_DB_URI"] = f"sqlite:///{self.dir}/{prefix}.db"
        config = Config.load(home=self.dir / "home", environ=self.env)
        topics.create_topics(config)
        return config

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        path = self.dir / f"{args[0]}-{len(self._logs)}.log"
        with open(path, "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "aiflow.cli", *args], env=dict(self.env), stdout=log,
                                       stderr=log, start_new_session=True)
        self._logs[process.pid] = path
        self.processes.append(process)
        return process

    def stop_processes(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        self.processes.clear()

    def close(self) -> None:
        self.stop_processes()
        self.broker.stop()

    def upload(self, config: Config, source: str, name: str) -> None:
        path = self.dir / f"{name}.py"
        path.write_text(source)
        ops.upload_workflows(path, config=config)


def wait_until(check: Callable[..., bool], timeout: float, what: str, *args: object) -> None:
    deadline = time.monotonic() + timeout
    while not check(*args):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def event_latency(lab: Lab, quick: bool) -> Result:
    """External event -> the task's callable running. An event is sent with `send_event` (durable on
    return); the callable writes time.time() first thing. Sequential: the next event is sent once the
    previous try ended, so every event starts a try. Latency = callable start - send start."""
    config = lab.config()
    marks = lab.dir / "event_marks"
    marks.mkdir(exist_ok=True)
    lab.upload(config, f"""
import time
from aiflow import Workflow, PythonOperator, TaskAction, BashOperator

def mark():
    import os
    open(os.path.join({str(marks)!r}, os.environ["AIFLOW_TRY_NUMBER"]), "w").write(repr(time.time()))

with Workflow(name="latency"):
    BashOperator(name="keepalive", bash_command="sleep 100000")
    PythonOperator(name="react", python_callable=mark).action_on_event_received(TaskAction.START, "bench")
""", "latency")
    lab.spawn("scheduler", "start")
    lab.spawn("worker", "start", "--slots", "4")
    execution_id = ops.start_workflow_execution("latency", config=config, wait=60)
    n = 30 if quick else 200
    samples = []
    with EventClient(config) as client:
        for i in range(1, n + 1):
            sent = time.time()
            client.send_event("bench")
            wait_until(_written, 60, "a try", marks / str(i))
            samples.append(float((marks / str(i)).read_text()) - sent)
            wait_until(_try_done, 60, "the try to end", config, execution_id, i)
    ops.stop_workflow_execution(execution_id, config=config)
    lab.stop_processes()
    ms = [s * 1000 for s in samples]
    p50, p99 = statistics.median(ms), percentile(ms, 99)
    return Result("event -> callable running", "ms", p50, percentile(ms, 95), p99, n, "p50 <= 15, p99 <= 60",
                  p50 <= 15 and p99 <= 60, event_latency.__doc__ or "")


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
    decision, the START command, the worker's spawn and the task process's start)."""
    config = lab.config()
    marks = lab.dir / "hop_marks"
    marks.mkdir(exist_ok=True)
    length = 8 if quick else 20
    lab.upload(config, f"""
import os, time
from aiflow import Workflow, PythonOperator

def mark():
    path = os.path.join({str(marks)!r}, os.environ["AIFLOW_EXECUTION_ID"] + "-" + os.environ["AIFLOW_TASK"])
    open(path + ".start", "w").write(repr(time.time()))
    open(path + ".end", "w").write(repr(time.time()))

with Workflow(name="hops"):
    previous = None
    for i in range({length}):
        task = PythonOperator(name=f"t{{i}}", python_callable=mark)
        if previous is not None:
            task.start_after(previous)
        previous = task
""", "hops")
    lab.spawn("scheduler", "start")
    lab.spawn("worker", "start", "--slots", "2")
    runs = 1 if quick else 2
    hops = []
    for _ in range(runs):
        execution_id = ops.start_workflow_execution("hops", config=config, wait=60)
        wait_until(_status_is, 300, "the chain", config, execution_id, "SUCCESS")
        for i in range(length - 1):
            end = float((marks / f"{execution_id}-t{i}.end").read_text())
            start = float((marks / f"{execution_id}-t{i + 1}.start").read_text())
            hops.append((start - end) * 1000)
    lab.stop_processes()
    p50 = statistics.median(hops)
    return Result("start_after hop", "ms", p50, percentile(hops, 95), percentile(hops, 99), len(hops), "p50 <= 20",
                  p50 <= 20, hop_latency.__doc__ or "")


def routing(lab: Lab, quick: bool) -> Result:
    """Events routed per second by one router: W workflow definitions, each listening to its own key,
    are published; then E events with keys spread over the W keys are written, and a router in this
    process is timed from its first to its last routed event (consume, index lookup, produce to the
    inbox, commit — in transactions). Run for 100 and for 10,000 workflows: the lookup is a dict, so
    the rate should not fall with W."""
    from aiflow.scheduler.router import Router

    rates = {}
    n_events = 20_000 if quick else 100_000
    for workflows in (100, 10_000):
        config = lab.config()
        publish_definitions(config, workflows)
        producer_client = EventClient(config)
        keys = [f"key-{i % workflows}" for i in range(n_events)]
        for chunk in range(0, n_events, 5000):
            producer_client.send_events([(k, None) for k in keys[chunk:chunk + 5000]])
        producer_client.close()
        router = Router(config)
        router.definitions.catch_up()
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
    rate = rates[10_000]
    return Result("events routed per second (10,000 workflows)", "events/s", rate, None, None, n_events,
                  ">= 20,000", rate >= 20_000, routing.__doc__ or "",
                  {"rate_100_workflows": rates[100], "rate_10000_workflows": rates[10_000]})


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
    rate is N / (time from the start command to the execution's SUCCESS). With 2 and 8 slots."""
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
        lab.spawn("scheduler", "start")
        lab.spawn("worker", "start", "--slots", str(slots))
        ops.start_workflow_execution("noops", config=config, wait=60)  # warm up: loads, group joins
        wait_until(_all_succeeded, 600, "warm-up", config, "noops")
        started = time.monotonic()
        execution_id = ops.start_workflow_execution("noops", config=config, wait=0)
        wait_until(_status_is, 900, "the no-op tasks", config, execution_id, "SUCCESS")
        rates[slots] = n / (time.monotonic() - started)
        lab.stop_processes()
    best = max(rates.values())
    return Result("no-op task executions per second, one worker", "tries/s", best, None, None, n, ">= 300",
                  best >= 300, task_throughput.__doc__ or "", {"slots_2": rates[2], "slots_8": rates[8]})


def failover(lab: Lab, quick: bool) -> Result:
    """Two schedulers share the inbox partitions; the one owning a workflow is SIGKILLed and an event
    for that workflow is sent at once. Time = the new try's queued-time (in the changelog) minus the
    moment of the kill. Client session timeout 3 s, transaction timeout 5 s (the local broker allows
    them; the broker defaults allow 45-60 s)."""
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
    return Result("failover: SIGKILL -> next decision", "s", p50, None, max(samples), len(samples), "<= 5",
                  p50 <= 5, failover.__doc__ or "")


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
    scheduler = lab.spawn("scheduler", "start")
    worker = lab.spawn("worker", "start")
    n = 1000 if quick else 10_000
    ops.start_workflow_execution("idle", config=config, wait=60)
    start_many(config, "idle", n - 1)
    wait_until(_at_least, 1800, "the executions", config, "idle", n)
    rss = {name: _rss(p.pid) for name, p in (("scheduler", scheduler), ("worker", worker))}
    lab.stop_processes()
    return Result(f"scheduler RSS with {n} active executions", "MB", rss["scheduler"], None, None, n, "<= 200",
                  rss["scheduler"] <= 200, memory.__doc__ or "", {"worker_rss_mb": rss["worker"]})


def start_many(config: Config, workflow: str, n: int) -> None:
    """What `ops.start_workflow_execution` sends, n times through one producer (ops opens one per call)."""
    [snapshot] = ops.list_workflow_snapshots(workflow, config=config, limit=1)
    args = {"snapshot_version": str(snapshot.version), "snapshot_uri": snapshot.uri,
            "snapshot_sha256": snapshot.sha256, "workflow_file": snapshot.workflow_file, "run_type": "MANUAL",
            "cause": "benchmark"}
    producer = clients.producer(config, role="bench")
    for _ in range(n):
        sending.produce(producer, config, InboxMessage.for_command("default", workflow, Command.START_EXECUTION,
                                                                   ops.new_execution_id(), args=args).to_record())
        producer.poll(0)
    producer.flush(120)


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


BENCHMARKS: dict[str, Callable[[Lab, bool], Result]] = {
    "event_latency": event_latency, "hop_latency": hop_latency, "routing": routing,
    "task_throughput": task_throughput, "failover": failover, "memory": memory, "restore": restore,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results.json"))
    args = parser.parse_args()
    lab = Lab()
    results: list[Result] = []
    try:
        lab.start_broker()
        for name in args.names or list(BENCHMARKS):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            result = BENCHMARKS[name](lab, args.quick)
            print(f"  done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            results.append(result)
    finally:
        lab.close()
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick}
    Path(args.output).write_text(json.dumps({"machine": machine, "results": [asdict(r) for r in results]}, indent=2))
    print(f"\n{'benchmark':48} {'median':>10} {'p95':>9} {'p99':>9} {'n':>7}  {'target':22} ok")
    for r in results:
        p95 = f"{r.p95:.1f}" if r.p95 is not None else "-"
        p99 = f"{r.p99:.1f}" if r.p99 is not None else "-"
        print(f"{r.name:48} {r.median:>10.1f} {p95:>9} {p99:>9} {r.samples:>7}  {r.target + ' ' + r.unit:22} "
              f"{'yes' if r.meets else 'NO'}")
        for key, value in r.extra.items():
            print(f"    {key}: {value:.1f}")
    print(f"\nresults written to {args.output}")


if __name__ == "__main__":
    threading.current_thread().name = "benchmarks"
    main()
