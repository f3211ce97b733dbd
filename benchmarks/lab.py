"""What every benchmark shares: the lab (a temporary aiflow home with its own broker, and the aiflow
processes started in it), the result row, and small helpers. run.py and the benchmarks in their own
files (tutorial.py, try_growth.py, send_events.py) import it; it imports none of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import broker_profile

from aiflow import ops
from aiflow.config import KAFKA_PROPERTY_ENV_PREFIX, Config
from aiflow.kafka import clients, sending, topics
from aiflow.kafka.local_broker import LocalBroker
from aiflow.protocol.commands import Command
from aiflow.protocol.messages import InboxMessage

REPO = Path(__file__).resolve().parent.parent
# idle, --idle-settle: the broker's JVM still compiles hot code for a minute or more after its start.
IDLE_SETTLE_S = 20.0
# The command as users type it: the console script next to this Python (`python -m aiflow.cli` without one).
_SCRIPT = Path(sys.executable).with_name("aiflow")
AIFLOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "aiflow.cli"]


@dataclass
class Result:
    name: str
    unit: str
    median: float
    p95: float | None
    p99: float | None
    samples: int
    target: str
    meets: bool | None  # None: a figure reported without a target
    method: str
    extra: dict[str, float] = field(default_factory=dict)
    detail: list[str] = field(default_factory=list)  # printed under the row; never compared


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[..., bool], timeout: float, what: str, *args: object) -> None:
    deadline = time.monotonic() + timeout
    while not check(*args):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def marking_workflow(name: str, marks: Path, more: str = "") -> str:
    """The source of a workflow whose task `react` starts on event `bench` (a never-ending `keepalive`
    keeps the execution running); each try notes in `marks/<try number>` when the workflow file's first
    line ran in its process and when the callable started. `more`: lines added to the workflow's body."""
    return f"""
import time
LOADED = time.time()  # the workflow file's first line, run in the task's process
import os
from aiflow import Workflow, Operator, PythonOperator, TaskAction, BashOperator

def mark():
    started = time.time()
    open(os.path.join({str(marks)!r}, os.environ["AIFLOW_TRY_NUMBER"]), "w").write(f"{{LOADED!r}} {{started!r}}")

with Workflow(name={name!r}):
    BashOperator(name="keepalive", bash_command="sleep 100000")
    PythonOperator(name="react", python_callable=mark).action_on_event_received(TaskAction.START, "bench")
{more}"""


def start_many(config: Config, workflow: str, n: int) -> list[str]:
    """What `ops.start_workflow_execution` sends, n times through one producer (ops opens one per call);
    returns the executions' ids."""
    [snapshot] = ops.list_workflow_snapshots(workflow, config=config, limit=1)
    args = {"snapshot_version": str(snapshot.version), "snapshot_uri": snapshot.uri,
            "snapshot_sha256": snapshot.sha256, "workflow_file": snapshot.workflow_file, "run_type": "MANUAL",
            "cause": "benchmark"}
    producer = clients.producer(config, role="bench")
    ids = [ops.new_execution_id() for _ in range(n)]
    for execution_id in ids:
        sending.produce(producer, config, InboxMessage.for_command("default", workflow, Command.START_EXECUTION,
                                                                   execution_id, args=args).to_record())
        producer.poll(0)
    producer.flush(120)
    return ids


class Lab:
    """A temporary aiflow home with its own broker, and helpers to start aiflow processes in it."""

    def __init__(self, kafka_properties: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aiflow-bench-"))
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")},
                    "AIFLOW_HOME": str(self.dir / "home"), "AIFLOW_BROKER_PORT": str(free_port()),
                    "AIFLOW_BROKER_CONTROLLER_PORT": str(free_port()),
                    "AIFLOW_KAFKA_SESSION_TIMEOUT_MS": "3000", "AIFLOW_KAFKA_TRANSACTION_TIMEOUT_MS": "5000",
                    # No /metrics in the lab's services (`idle` measures a standalone with its own). On their
                    # fixed default ports they met other labs and other people's services, and then ran
                    # without the endpoint and its lag collector, silently: runs differed.
                    "AIFLOW_METRICS_SCHEDULER_PORT": "0", "AIFLOW_METRICS_WORKER_PORT": "0",
                    # --kafka-property: for every client of the benchmark and of the processes it starts.
                    **{KAFKA_PROPERTY_ENV_PREFIX + name.upper().replace(".", "_"): value
                       for name, value in (kafka_properties or {}).items()}}
        self.base = Config.load(home=self.dir / "home", environ=self.env)
        self.broker = LocalBroker(self.base)
        self.broker_running = False
        self.idle_settle = IDLE_SETTLE_S
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}
        self.profile: Path | None = None  # --broker-profile: where each start of the broker records to
        self.profiles: list[Path] = []

    def log_of(self, process: subprocess.Popen[bytes]) -> Path:
        return self._logs[process.pid]

    def start_broker(self) -> None:
        """Started by the first benchmark that needs it (`idle` runs a broker of its own instead)."""
        if not self.broker_running:
            self.broker.start()
            self.broker_running = True
            pid = self.broker.pid()
            if self.profile is not None and pid is not None:
                self.profiles.append(broker_profile.start(pid, self.profile))

    def stop_broker(self) -> None:
        if self.broker_running:
            self.broker.stop()
            self.broker_running = False

    def config(self) -> Config:
        """A fresh topic prefix on the lab's broker, with its topics."""
        self.start_broker()
        prefix = f"b{uuid.uuid4().hex[:8]}"
        self.env["AIFLOW_TOPIC_PREFIX"] = prefix
        self.env["AIFLOW_DB_URI"] = f"sqlite:///{self.dir}/{prefix}.db"
        config = Config.load(home=self.dir / "home", environ=self.env)
        topics.create_topics(config)
        return config

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        path = self.dir / f"{args[0]}-{len(self._logs)}.log"
        with open(path, "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "aiflow.cli", *args], env=dict(env or self.env),
                                       stdout=log, stderr=log, start_new_session=True)
        self._logs[process.pid] = path
        self.processes.append(process)
        return process

    def start_services(self, slots: int | None = None) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """An `aiflow scheduler` and an `aiflow worker` (`slots`: its --slots), once each of their loops has
        its partitions; RuntimeError, naming its log, if one of them exits first."""
        scheduler = self.spawn("scheduler", "start")
        worker = self.spawn("worker", "start", *(("--slots", str(slots)) if slots else ()))
        self.wait_assigned(scheduler, "router", "scheduler", "projector")
        self.wait_assigned(worker, "worker")
        return scheduler, worker

    def wait_assigned(self, process: subprocess.Popen[bytes], *roles: str, timeout: float = 120) -> None:
        """Wait until each of the process's loops (router, scheduler, projector, worker) has its
        partitions, so a timed run does not include the services' start."""
        log = self.log_of(process)

        def assigned() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{log.stem} exited with {process.returncode}: see {log}")
            return all(f"{role}: assigned partitions" in log.read_text() for role in roles)

        wait_until(assigned, timeout, f"{', '.join(roles)} to get their partitions (see {log})")

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

    def close(self, keep: bool = False) -> None:
        """Stop everything and delete the lab's folder (its broker's data, stores and logs: tens of MB a
        run), unless `keep`: after a failure, its logs say why."""
        self.stop_processes()
        self.stop_broker()
        if keep:
            print(f"the lab's logs and data are kept in {self.dir}", file=sys.stderr, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def upload(self, config: Config, source: str, name: str) -> None:
        path = self.dir / f"{name}.py"
        path.write_text(source)
        ops.upload_workflows(path, config=config)
