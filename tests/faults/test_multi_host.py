"""Three hosts made with `ip netns` (tests/netns.py): host a runs the Kafka broker, PostgreSQL and an S3
server; hosts b and c each run a scheduler and a worker, with an aiflow home of their own and nothing
shared but those three services. Tutorial-like workflows run across them, a try's output is read
from host a, and then host b's link is cut: its workflows and tries move to host c.

What is counted, from the store, the events topic and each host's own record of what its tasks did
(`$AIFLOW_HOME/ran.txt`, one line per try):

- every try of every task runs at most once (one line per workflow, execution, task and try number,
  over both hosts), every try the store calls SUCCESS has its line, and no task has two live tries;
- every try that failed was running on host b when it was cut, and was retried on host c;
- the never-ending `stream` task sends `tick` n and waits for `tock` n before sending n + 1 (a retry
  resumes after the last tick sent), and `react`, started by each tick, answers it: every tick is sent
  once, starts exactly one try (retried only where that try was on host b), and exactly one successful
  try of `react` handled each tick.

The test prints the figures docs/operations.md quotes (*Several hosts*).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from aiflow import EventClient, ops
from aiflow.config import Config
from aiflow.errors import BrokerError
from aiflow.kafka import topics
from aiflow.kafka.local_broker import LocalBroker
from aiflow.ops.executions import TaskExecutionInfo
from aiflow.protocol.records import inbox_partition
from aiflow.sdk.status import TASK_ALIVE_SET
from tests.conftest import IN_CI, _postgres_bin, broker_cache_dir, process_env, wait_until
from tests.netns import Host, HostPostgres, Network, network, require_netns
from tests.s3server import _require_moto

pytestmark = pytest.mark.timeout(420)

BROKER_PORT, S3_PORT = 9092, 9000
HEARTBEAT_TIMEOUT = 6  # seconds: how long host b's tries stay RUNNING in the store after the cut, at least
# Four partitions of each topic: two per scheduler and per worker. A workflow per inbox partition, so both
# schedulers own some; an execution's tries go to the worker of its tasks partition (by its random id), so
# executions are started until both workers have some: at most MAX_EXECUTIONS (P(all on one) = 2^-9).
PARTITIONS, MAX_EXECUTIONS = 4, 10

WORKFLOW = '''
"""Like the tutorial: a batch chain (prepare, then train), a never-ending task that sends events
(stream: `tick` n, then it waits for `tock` n) and a task started by each of them (react); probe is
started by an event from outside, which every execution hears."""
import os
import socket
import time
from datetime import datetime, timedelta, timezone

from aiflow import EventClient, PythonOperator, TaskAction, Workflow


def note(what):
    """One line per try in this host's home (no folder is shared between hosts), and in the try's log."""
    line = " ".join([os.environ["AIFLOW_WORKFLOW"], os.environ["AIFLOW_EXECUTION_ID"], os.environ["AIFLOW_TASK"],
                     os.environ["AIFLOW_TRY_NUMBER"], what, socket.gethostname()])
    with open(os.path.join(os.environ["AIFLOW_HOME"], "ran.txt"), "a") as out:
        out.write(line + "\\n")
    print(line, flush=True)


def recent(client, key):
    """The values of this execution's events `key` of the last ten minutes."""
    me = os.environ["AIFLOW_EXECUTION_ID"]
    since = datetime.now(timezone.utc) - timedelta(minutes=10)
    return [int(e.value) for e in client.iter_events(key=key, since=since) if e.execution_id == me]


def prepare():
    note("-")


def train():
    time.sleep(0.5)
    note("-")


def stream():
    note("-")
    me = os.environ["AIFLOW_EXECUTION_ID"]
    tocks = set()

    class Tocks:
        def process(self, events):
            tocks.update(int(e.value) for e in events if e.execution_id == me)

    with EventClient() as client:
        client.register_listener(Tocks(), ["tock"], begin_time=datetime.now(timezone.utc) - timedelta(minutes=10))
        n = max(recent(client, "tick"), default=-1)  # an earlier try (elsewhere) may have sent some
        while True:
            while n >= 0 and n not in tocks:
                time.sleep(0.05)
            time.sleep(0.5)
            n += 1
            client.send_event("tick", str(n))


def probe():
    note("-")


def react():
    with EventClient() as client:
        n = max(recent(client, "tick"))  # the tick that started this try: stream sends no other before the tock
        note(str(n))
        client.send_event("tock", str(n))


with Workflow(name=NAME):
    first = PythonOperator(name="prepare", python_callable=prepare, max_retries=3)
    second = PythonOperator(name="train", python_callable=train, max_retries=3)
    second.start_after(first)
    source = PythonOperator(name="stream", python_callable=stream, max_retries=3)
    source.start_after(second)
    PythonOperator(name="react", python_callable=react, max_retries=3).action_on_event_received(
        TaskAction.START, "tick")
    PythonOperator(name="probe", python_callable=probe, max_retries=3).action_on_event_received(
        TaskAction.START, "probe")
'''

RETRY = re.compile(r"^retry \d+ of \d+ after try (\d+) failed$")
ON_TICK = re.compile(r"^rule 1 of react \(START\) on event 'tick' at \S+/(\d+)/(\d+)$")
ON_PROBE = re.compile(r"^rule 1 of probe \(START\) on event 'probe' at \S+$")


def workflow_names(partitions: int) -> list[str]:
    """Workflow names whose inbox partitions are 0, 1, 2, ...: each scheduler owns some of them."""
    names: dict[int, str] = {}
    for i in range(1000):
        name = f"relay{i}"
        names.setdefault(inbox_partition(f"default/{name}", partitions), name)
        if len(names) == partitions:
            return [names[p] for p in range(partitions)]
    raise AssertionError("no names for every partition")


def owned(log: Path, role: str = "scheduler") -> set[int]:
    """The partitions a scheduler (or worker) was last assigned, from its log."""
    found = re.findall(rf"{role}: assigned partitions \[([0-9, ]*)\]", log.read_text()) if log.exists() else []
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else set()


def restored_after(log: Path, since: float) -> list[tuple[float, set[int]]]:
    """(time, partitions) of each state restore the scheduler logged after `since`."""
    found = []
    for line in log.read_text().splitlines():
        match = re.match(r"(\S+ \S+) INFO \S+: scheduler: restored \d+ active executions of partitions \[([0-9, ]*)\]",
                         line)
        if match:
            at = time.mktime(datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timetuple()) + \
                int(match[1].rsplit(",", 1)[1]) / 1000
            if at >= since:
                found.append((at, {int(p) for p in match[2].split(",") if p.strip()}))
    return found


def start_broker(host: Host, env: dict[str, str]) -> None:
    """The Kafka broker of host a, on its address, with the test's topics; one more try on a failed start."""
    for attempt in (1, 2):
        done = host.run([sys.executable, "-m", "aiflow.cli", "broker", "start", "-d"], env, timeout=240)
        if done.returncode == 0:
            return
        if attempt == 2:
            raise BrokerError(f"the broker of host a did not start: {done.stdout[-1000:]}{done.stderr[-2000:]}")


def start_s3(host: Host, log: Path) -> str:
    """moto's S3 server on host a's address; its endpoint."""
    endpoint = f"http://{host.address}:{S3_PORT}"
    process = host.start([sys.executable, "-m", "moto.server", "-H", host.address, "-p", str(S3_PORT)], {**os.environ},
                         log)

    def answers() -> bool:
        assert process.poll() is None, f"moto's server exited: {log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    wait_until(answers, 60, f"moto's S3 server does not answer at {endpoint}")
    return endpoint


def worker_of(host: Host, worker: str) -> bool:
    return worker.startswith(f"{host.hostname}-")


def ran_lines(net: Network) -> list[tuple[str, tuple[str, str, str, int], str]]:
    """(host, (workflow, execution, task, try), what) of every line the tasks wrote, on every host."""
    lines = []
    for host in net.hosts.values():
        path = host.dir / "home" / "ran.txt"
        if path.exists():
            for line in path.read_text().splitlines():
                workflow, execution, task, number, what, _ = line.split(" ")
                lines.append((host.name, (workflow, execution, task, int(number)), what))
    return lines


def test_cutting_a_host_moves_its_workflows_and_tries_to_another_exactly_once(tmp_path: Path) -> None:
    require_netns()
    bin_dir = _postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL is not installed (Debian: apt-get install postgresql; scripts/test.sh does it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    _require_moto()
    LocalBroker(Config.load(home=tmp_path / "fetch", environ={"AIFLOW_BROKER_CACHE_DIR": broker_cache_dir()})).fetch()
    logs = tmp_path / "logs"
    logs.mkdir()
    with network(tmp_path) as net:
        a, b, c = net["a"], net["b"], net["c"]
        bootstrap = f"{a.address}:{BROKER_PORT}"
        prefix = f"t{uuid.uuid4().hex[:10]}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIFLOW_", "AWS_"))}
        clean["NO_PROXY"] = clean["no_proxy"] = ",".join(filter(None, [a.address, os.environ.get("NO_PROXY")]))

        # Host a: Kafka (advertised on a's address), PostgreSQL, S3.
        start_broker(a, {**clean, "AIFLOW_HOME": str(a.dir / "broker-home"), "AIFLOW_BROKER_HOST": a.address,
                         "AIFLOW_BROKER_PORT": str(BROKER_PORT), "AIFLOW_BROKER_CONTROLLER_PORT": str(BROKER_PORT + 1),
                         "AIFLOW_BROKER_CACHE_DIR": broker_cache_dir(), "AIFLOW_BROKER_HEAP": "384m",
                         "AIFLOW_TOPIC_PREFIX": prefix, "AIFLOW_TOPIC_PARTITIONS": str(PARTITIONS)})
        postgres = HostPostgres(bin_dir, a)
        try:
            postgres.start()
            db_uri = postgres.create_database()
            s3 = start_s3(a, logs / "s3.log")
            import boto3

            boto3.session.Session().client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="testing",
                                           aws_secret_access_key="testing").create_bucket(Bucket="aiflow")
            shared = {
                "AIFLOW_DB_URI": db_uri, "AIFLOW_BLOB_URI": f"s3://aiflow/{prefix}", "AIFLOW_BLOB_S3_ENDPOINT_URL": s3,
                "AIFLOW_BLOB_S3_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                "AIFLOW_TOPIC_PREFIX": prefix, "AIFLOW_TOPIC_PARTITIONS": str(PARTITIONS),
                "AIFLOW_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                "AIFLOW_WORKER_HEARTBEAT_INTERVAL": "1", "AIFLOW_WORKER_STOP_GRACE": "2"}

            def env_of(host: Host) -> dict[str, str]:
                env, _ = process_env(host.dir, bootstrap, **shared)  # AIFLOW_HOME: <host's folder>/home
                env = {k: v for k, v in env.items() if not k.startswith("AWS_") or k in shared}
                return {**env, "NO_PROXY": clean["NO_PROXY"], "no_proxy": clean["NO_PROXY"]}

            # The test's own view (an operator's machine on the same network): the store and the topics.
            observer = Config.load(home=tmp_path / "observer", environ={
                "AIFLOW_KAFKA_BOOTSTRAP": bootstrap, **{k: v for k, v in shared.items() if k.startswith("AIFLOW_")}})

            # Host a uploads the workflows, from a home of its own.
            names = workflow_names(PARTITIONS)
            for name in names:
                path = a.dir / f"{name}.py"
                path.write_text(WORKFLOW.replace("NAME", repr(name)))
                done = a.run([sys.executable, "-m", "aiflow.cli", "workflow", "upload", str(path)], env_of(a))
                assert done.returncode == 0, done.stdout + done.stderr

            # Hosts b and c: a scheduler and a worker each.
            for host in (b, c):
                for service in ("scheduler", "worker"):
                    extra = ["--slots", "12"] if service == "worker" else []
                    host.start([sys.executable, "-m", "aiflow.cli", service, "start", *extra], env_of(host),
                               logs / f"{service}-{host.name}.log")
            scheduler_logs = {"b": logs / "scheduler-b.log", "c": logs / "scheduler-c.log"}
            for role, role_logs in (("scheduler", scheduler_logs),
                                    ("worker", {"b": logs / "worker-b.log", "c": logs / "worker-c.log"})):
                wait_until(lambda: owned(role_logs["b"], role) and owned(role_logs["c"], role)  # noqa: B023
                           and owned(role_logs["b"], role) | owned(role_logs["c"], role) == set(range(PARTITIONS)), 120,  # noqa: B023
                           f"the two {role}s never shared the partitions")

            executions: dict[str, str] = {}  # execution -> workflow

            def tries() -> dict[str, list[TaskExecutionInfo]]:
                return {e: ops.list_task_executions(e, config=observer) for e in executions}

            def hosts_used() -> set[str]:
                return {h.name for ts in tries().values() for t in ts for h in (b, c) if worker_of(h, t.worker)}

            # One execution per workflow; more until both workers run some (an execution's tries go to
            # the worker that holds its tasks partition).
            for name in (names * MAX_EXECUTIONS)[:MAX_EXECUTIONS]:
                if len(executions) >= len(names) and hosts_used() == {"b", "c"}:
                    break
                executions[ops.start_workflow_execution(name, config=observer, wait=60)] = name
                if len(executions) >= len(names):
                    wait_until(lambda: all(any(t.task == "prepare" and t.worker for t in ts)
                                           for ts in tries().values()), 90, "prepare did not run")
            assert hosts_used() == {"b", "c"}, "every execution's tries landed on one worker"

            def reacted(ts: list[TaskExecutionInfo], host: Host, since: float = 0.0) -> int:
                return sum(1 for t in ts if t.task == "react" and t.status == "SUCCESS" and worker_of(host, t.worker)
                           and t.begin_date is not None and t.begin_date.timestamp() >= since)

            wait_until(lambda: all(reacted(ts, b) + reacted(ts, c) >= 3 for ts in tries().values()), 120,
                       lambda: f"the events do not flow: {tries()}")

            # A try's output, read on host a (no log file there: from the logs topic), for a try of each host.
            for host in (b, c):
                execution, react = next((e, t) for e, ts in tries().items() for t in ts if t.task == "react"
                                        and t.status == "SUCCESS" and worker_of(host, t.worker))
                done = a.run([sys.executable, "-m", "aiflow.cli", "task-execution", "logs", execution, "react",
                              "--try", str(react.try_number), "-o", "json"], env_of(a))
                assert done.returncode == 0, done.stdout + done.stderr
                log = json.loads(done.stdout)
                assert log["source"] == topics.name(observer, topics.LOGS) and log["ended"], log
                printed = f"{executions[execution]} {execution} react {react.try_number} "
                assert any(line.startswith(printed) and line.endswith(f" {host.hostname}")
                           for line in log["text"].splitlines()), log["text"]

            # Cut host b off.
            b_partitions = owned(scheduler_logs["b"])
            b_workflows = {n for n in names if inbox_partition(f"default/{n}", PARTITIONS) in b_partitions}
            assert b_workflows
            cut_at = time.time()
            net.cut("b")
            with EventClient(observer) as client:  # an event from outside, at the cut: every execution hears it
                client.send_event("probe")

            def settled() -> bool:
                """Every try host b held is failed and retried on c, and events flow again everywhere."""
                now = tries()
                for ts in now.values():
                    for t in ts:
                        if worker_of(b, t.worker) and t.status != "SUCCESS":
                            retry = [r for r in ts if r.task == t.task and r.try_number == t.try_number + 1]
                            if t.status != "FAILED" or not retry or not worker_of(c, retry[0].worker):
                                return False
                return all(reacted(ts, c, since=cut_at) >= 3 and any(t.task == "probe" and t.status == "SUCCESS"
                                                                    for t in ts) for ts in now.values())

            wait_until(settled, 120, lambda: f"host b's work did not move to host c: {tries()}")

            # When c's scheduler had restored b's partitions.
            restores, took_over, gained = restored_after(scheduler_logs["c"], cut_at), None, set()
            for at, parts in restores:
                gained |= parts
                if b_partitions <= gained:
                    took_over = at
                    break

            # A consistent snapshot: the events first, then (once the store has caught up) the tries, then
            # the lines (a try writes its line before it ends).
            with EventClient(observer) as client:
                events = [e for e in client.iter_events() if e.key in ("tick", "tock")]
            sent_ticks = Counter(e.execution_id for e in events if e.key == "tick")

            def caught_up(found: dict[str, list[TaskExecutionInfo]]) -> bool:
                """A successful react try for each tick but the newest (the checks below say which is missing)."""
                return all(sum(t.task == "react" and t.status == "SUCCESS" for t in found.get(e, [])) >= n - 1
                           for e, n in sent_ticks.items())

            deadline = time.monotonic() + 30
            while not caught_up(final := tries()) and time.monotonic() < deadline:
                time.sleep(0.5)
            lines = ran_lines(net)
        finally:
            postgres.remove()

        moved, retried_at = [], []
        for execution, ts in final.items():
            by_task: dict[str, list[TaskExecutionInfo]] = defaultdict(list)
            for t in ts:
                by_task[t.task].append(t)
            for task, task_tries in by_task.items():
                numbers = sorted(t.try_number for t in task_tries)
                assert numbers == list(range(1, len(numbers) + 1)), f"{execution} {task}: tries {numbers}"
                alive = [t.try_number for t in task_tries if t.status in {s.value for s in TASK_ALIVE_SET}]
                assert alive in ([], [numbers[-1]]), f"{execution} {task}: live tries {alive}"
                for t in task_tries:
                    assert t.worker or (t.status == "QUEUED" and t.try_number == numbers[-1]), t
                    # b's worker reads nothing after the cut: it starts no try.
                    assert not (worker_of(b, t.worker) and t.begin_date and t.begin_date.timestamp() > cut_at + 1), t
                    if t.status == "FAILED":
                        assert worker_of(b, t.worker) and "heartbeat" in t.message, t
                        [retry] = [r for r in task_tries if r.try_number == t.try_number + 1]
                        assert RETRY.match(retry.cause) and worker_of(c, retry.worker), retry
                        moved.append(t)
                        assert retry.begin_date is not None
                        retried_at.append(retry.begin_date.timestamp())
                    retry_of = RETRY.match(t.cause)
                    if retry_of:  # a retry follows a try that failed
                        assert int(retry_of[1]) == t.try_number - 1, t
                        assert [p.status for p in task_tries if p.try_number == t.try_number - 1] == ["FAILED"], t

        # Every try ran at most once over both hosts; every successful one has its line.
        counted = Counter(key for _, key, _ in lines)
        doubled = {k: n for k, n in counted.items() if n > 1}
        assert not doubled, f"tries that ran twice: {doubled}"
        where = {key: (host, what) for host, key, what in lines}
        status = {(executions[e], e, t.task, t.try_number): t for e, ts in final.items() for t in ts}
        missing = [k for k, t in status.items() if t.status == "SUCCESS" and k not in where]
        assert not missing, f"tries the store calls SUCCESS that left no line: {missing}"
        for key, (host, _) in where.items():
            if key in status and status[key].status == "FAILED":
                assert host == "b", f"a failed try that ran on {host}: {key}"

        # Every tick sent once, started exactly one try of react, and was handled by exactly one successful try.
        ticks: dict[str, list[Any]] = defaultdict(list)
        for event in events:
            if event.key == "tick":
                ticks[event.execution_id].append(event)
        in_flight, handled_total = 0, 0
        for execution, ts in final.items():
            sent = sorted(int(e.value) for e in ticks[execution])
            assert sent == list(range(len(sent))) and len(sent) >= 6, f"{execution}: ticks {sent}"
            started: dict[tuple[int, int], list[int]] = defaultdict(list)
            origin: dict[int, tuple[int, int]] = {}
            react_tries = sorted((t for t in ts if t.task == "react"), key=lambda t: t.try_number)
            for t in react_tries:
                on_tick, retry = ON_TICK.match(t.cause), RETRY.match(t.cause)
                assert on_tick or retry, f"react try {t.try_number} of {execution}: cause {t.cause!r}"
                if on_tick:
                    origin[t.try_number] = (int(on_tick[1]), int(on_tick[2]))
                    started[origin[t.try_number]].append(t.try_number)
                else:
                    origin[t.try_number] = origin[int(retry[1])]  # type: ignore[index]
            assert all(len(v) == 1 for v in started.values()), f"{execution}: ticks that started two tries {started}"
            value_of = {(e.partition, e.offset): int(e.value) for e in ticks[execution]}
            handled = Counter(value_of[origin[t.try_number]] for t in react_tries
                              if t.status == "SUCCESS" and origin[t.try_number] in value_of)
            assert all(n == 1 for n in handled.values()), f"{execution}: ticks handled twice {handled}"
            for t in react_tries:
                if t.status == "SUCCESS":  # the line names the tick the try read: the one that started it
                    key = (executions[execution], execution, "react", t.try_number)
                    assert where[key][1] == str(value_of.get(origin[t.try_number], where[key][1])), (key, where[key])
            # None lost: only the newest tick may still be on its way (its try not yet in the store).
            unhandled = [n for n in sent if n not in handled]
            assert unhandled in ([], [sent[-1]]), f"{execution}: ticks no try handled {unhandled}"
            in_flight += len(unhandled)
            handled_total += len(handled)

        # The event sent at the cut started exactly one try of probe in every execution (retried only where
        # that try was on b); when the first try ran is when c's scheduler decided for b's workflows.
        probed: dict[str, float] = {}
        for execution, ts in final.items():
            on_probe = [t for t in ts if t.task == "probe" and ON_PROBE.match(t.cause)]
            assert len(on_probe) == 1 and on_probe[0].begin_date is not None, f"{execution}: probe tries {ts}"
            probed[execution] = on_probe[0].begin_date.timestamp() - cut_at
        first_decision = min(at for e, at in probed.items() if executions[e] in b_workflows)
        b_executions = {e for e, ts in final.items() if any(worker_of(b, t.worker) for t in ts)}
        # Every execution whose tries ran on b goes on on c.
        assert all(any(worker_of(c, t.worker) and t.begin_date is not None and t.begin_date.timestamp() > cut_at
                       for t in final[e]) for e in b_executions)
        print(f"\nmulti-host: {len(final)} executions of {len(names)} workflows; host b's worker ran tries of "
              f"{len(b_executions)} (all moved to host c's), its scheduler owned {sorted(b_workflows)} "
              f"(inbox partitions {sorted(b_partitions)})")
        if took_over is not None:
            print(f"multi-host: host c's scheduler restored host b's partitions {took_over - cut_at:.1f} s "
                  "after the cut")
        print(f"multi-host: the event sent at the cut started its try in host b's workflows {first_decision:.1f} s "
              f"after the cut, in every execution within {max(probed.values()):.1f} s")
        print(f"multi-host: {len(moved)} tries host b held were failed by heartbeat and retried on host c, the last "
              f"running {max(retried_at) - cut_at:.1f} s after the cut" if moved else
              "multi-host: host b held no try at the cut")
        print(f"multi-host: {sum(len(v) for v in ticks.values())} ticks, {handled_total} handled exactly once, "
              f"{in_flight} in flight at the count, none lost or doubled; {len(lines)} tries counted by their "
              "lines, none doubled")
        assert took_over is not None, f"host c's scheduler never restored partitions {b_partitions}: {restores}"
        assert moved, "host b held no try when it was cut"
