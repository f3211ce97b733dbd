"""Kafka's own faults: a broker restart mid-stream, a broker that is not there yet when the services
start, and consumer-group offsets that are gone. Each test runs a broker of its own, which it kills.

Every count comes from what the tasks and the events topic say, not from aiflow's own summaries:
each try's cause names the event (topic/partition/offset) that started it.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from aiflow import EventClient, ops
from aiflow.config import Config
from aiflow.errors import AIFlowError
from aiflow.kafka import clients
from aiflow.sdk.status import TASK_FINISHED_SET
from tests.conftest import make_config, own_broker, process_alive, process_env, start_aiflow, stop_processes, wait_until

# Tasks t0..t29, started by events tick0..tick29 in turn: a task's next event comes 30 s after its last.
# An event that arrives while its task's previous try is still alive starts nothing (by design), so the
# spacing must outlast the slowest recovery of a try's start: a transactional call that librdkafka
# leaves hanging through a broker's shutdown is given up after its deadline (about 10 s), then renewed.
TICKS = 30
BEATING = f"""
import os, time
from aiflow import Workflow, PythonOperator, TaskAction, EventClient

def beat():
    with open("../beat.pid", "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    client = EventClient()
    n = 0
    while not os.path.exists("../stop-beating"):
        try:
            client.send_event(f"tick{{n % {TICKS}}}", str(n))
        except Exception:
            pass  # Kafka is away: the event stays queued in the client, which delivers it when Kafka is back
        n += 1
        time.sleep(1)
    while True:
        time.sleep(60)

def nothing():
    pass

with Workflow(name="beating"):
    PythonOperator(name="beat", python_callable=beat)
    for i in range({TICKS}):
        PythonOperator(name=f"t{{i}}", python_callable=nothing).action_on_event_received(TaskAction.START, f"tick{{i}}")
    PythonOperator(name="probe", python_callable=nothing).action_on_event_received(TaskAction.START, "probe")
"""
SOURCE = re.compile(r" at (\S+/\d+/\d+)$")


def tries_by_source(config: Config, execution_id: str) -> Counter[str]:
    """How many tries each event started: the event's place, from each try's cause."""
    found: Counter[str] = Counter()
    for t in ops.list_task_executions(execution_id, config=config):
        match = SOURCE.search(t.cause or "")
        if match and t.task.startswith("t"):
            found[match.group(1)] += 1
    return found


def tick_events(config: Config) -> list[str]:
    with EventClient(config) as client:
        return [f"{config.topic_prefix}.events/{e.partition}/{e.offset}" for e in client.list_events()
                if e.key.startswith("tick")]


def wait_for_every_tick_handled(config: Config, execution_id: str) -> None:
    """Once `beat` has stopped ticking: wait until the store holds a try for every tick event and every try
    but `beat`'s has ended (the last ticks' tries may still be queued or running when the ticks stop)."""
    def handled() -> bool:
        time.sleep(1)  # the tick that `beat` may send after the stop file appeared (it looks once a second)
        ended = all(t.status in TASK_FINISHED_SET for t in ops.list_task_executions(execution_id, config=config)
                    if t.task != "beat")
        return ended and sum(tries_by_source(config, execution_id).values()) >= len(tick_events(config))

    wait_until(handled, 60, lambda: f"tries {_statuses(config, execution_id)} for {len(tick_events(config))} events")


def send_until_stored(config: Config, key: str, timeout: float = 120.0) -> float:
    """Send an event, retrying while Kafka cannot store it yet; returns when it was stored."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with EventClient(config) as client:
                client.send_event(key)
            return time.time()
        except AIFlowError:
            assert time.monotonic() < deadline, f"event {key} could not be sent"
            time.sleep(0.5)


def test_a_broker_restart_mid_stream_fails_nothing_and_every_event_starts_its_task_once(tmp_path: Path) -> None:
    with own_broker(tmp_path / "broker") as broker:
        bootstrap = broker.config.bootstrap
        env, prefix = process_env(tmp_path, bootstrap, AIFLOW_HEARTBEAT_TIMEOUT="30")
        config = make_config(tmp_path / "home", bootstrap, AIFLOW_TOPIC_PREFIX=prefix)
        logs = tmp_path / "logs"
        logs.mkdir()
        services = [start_aiflow(["scheduler", "start"], env, logs / "scheduler.log"),
                    start_aiflow(["worker", "start", "--slots", "8"], env, logs / "worker.log")]
        try:
            (tmp_path / "beating.py").write_text(BEATING)
            wait_until(lambda: _topics_exist(config), 60, "the services created the topics")
            ops.upload_workflows(tmp_path / "beating.py", config=config)
            execution_id = ops.start_workflow_execution("beating", config=config, wait=60)
            workdir = config.home / "working_dir" / "beating" / execution_id
            wait_until(lambda: len(tick_events(config)) >= 8, 60, "the first events")

            broker.kill_node(1)
            time.sleep(60)  # longer than the heartbeat timeout
            broker.start_node(1)
            back = time.time()
            sent = send_until_stored(config, "probe")
            wait_until(lambda: "probe" in _statuses(config, execution_id), 60, "the probe's try")
            probe = ops.get_task_execution(execution_id, "probe", config=config)
            assert probe is not None and probe.begin_date is not None
            print(f"\nbroker back -> probe stored: {sent - back:.2f} s; -> its try running: "
                  f"{probe.begin_date.timestamp() - back:.2f} s")

            wait_until(lambda: len(tick_events(config)) >= 40, 120, "events after the restart")
            (workdir / "stop-beating").touch()
            wait_for_every_tick_handled(config, execution_id)
            assert tries_by_source(config, execution_id) == Counter(tick_events(config))  # each exactly once

            statuses = _statuses(config, execution_id)
            assert statuses.pop("beat") == [(1, "RUNNING")]  # the never-ending try lived through it
            assert all(s == "SUCCESS" for tries in statuses.values() for _, s in tries), statuses
            [pid] = (workdir / "beat.pid").read_text().split()
            assert process_alive(int(pid))
            info = ops.get_workflow_execution(execution_id, config=config)
            assert info is not None and info.status == "RUNNING"
            assert [p.poll() for p in services] == [None, None], "a service stopped"
            for log in logs.iterdir():
                lines = log.read_text().splitlines()
                raw = [line for line in lines if "aiflow.librdkafka" in line and "Connect to" in line]
                assert not raw, f"{log.name}: librdkafka's own connection lines: {raw[:3]}"
                # Quiet: per client, one line when it lost Kafka, one per 30 s while it was gone, one when back.
                per_client = Counter(re.sub(r".*\((.+ client)\).*", r"\1", line) for line in lines
                                     if "aiflow.kafka:" in line and " client)" in line)
                assert all(n <= 2 + 75 // 30 + 1 for n in per_client.values()), per_client
                assert len(lines) < 150, f"{log.name}: {len(lines)} lines"
        finally:
            stop_processes(services)


def test_services_started_before_the_broker_wait_for_it_and_the_workflow_runs(tmp_path: Path) -> None:
    with own_broker(tmp_path / "broker", start=False) as broker:
        bootstrap = broker.config.bootstrap
        env, prefix = process_env(tmp_path, bootstrap)
        config = make_config(tmp_path / "home", bootstrap, AIFLOW_TOPIC_PREFIX=prefix)
        logs = tmp_path / "logs"
        logs.mkdir()
        services = [start_aiflow(["scheduler", "start"], env, logs / "scheduler.log"),
                    start_aiflow(["worker", "start"], env, logs / "worker.log")]
        try:
            time.sleep(20)
            for process, log in zip(services, ("scheduler.log", "worker.log"), strict=True):
                assert process.poll() is None, f"{log}: {(logs / log).read_text()[-2000:]}"
                assert f"waiting for Kafka at {bootstrap}" in (logs / log).read_text()
            broker.start()
            wait_until(lambda: _topics_exist(config), 60, "the services created the topics")
            flow = tmp_path / "chain.py"
            flow.write_text("from aiflow import Workflow, BashOperator\n"
                            "with Workflow(name='chain'):\n"
                            "    a = BashOperator(name='a', bash_command='true')\n"
                            "    BashOperator(name='b', bash_command='true').start_after(a)\n")
            ops.upload_workflows(flow, config=config)
            execution_id = ops.start_workflow_execution("chain", config=config, wait=60)
            wait_until(lambda: _status(config, execution_id) == "SUCCESS", 120, "the workflow to run")
        finally:
            stop_processes(services)


def test_a_daemon_without_kafka_says_what_it_waits_for(tmp_path: Path) -> None:
    import subprocess
    import sys

    with own_broker(tmp_path / "broker", start=False) as broker:
        env, _ = process_env(tmp_path, broker.config.bootstrap)
        done = subprocess.run([sys.executable, "-m", "aiflow.cli", "worker", "start", "-d", "--wait", "5"], env=env,
                              capture_output=True, text=True, timeout=60)
        try:
            assert done.returncode == 1
            assert f"not ready after 5 s: waiting for Kafka at {broker.config.bootstrap}" in done.stderr
            assert "keeps trying in the background" in done.stderr and "aiflow worker stop" in done.stderr
        finally:
            subprocess.run([sys.executable, "-m", "aiflow.cli", "worker", "stop"], env=env, capture_output=True,
                           timeout=90)


def test_lost_offsets_replay_nothing(tmp_path: Path) -> None:
    """The router's, the scheduler's and the workers' committed offsets are deleted while the services
    are down; after they start again no old event fires a rule and no old START starts a try."""
    with own_broker(tmp_path / "broker") as broker:
        bootstrap = broker.config.bootstrap
        env, prefix = process_env(tmp_path, bootstrap, AIFLOW_WORKER_STOP_GRACE="2")
        config = make_config(tmp_path / "home", bootstrap, AIFLOW_TOPIC_PREFIX=prefix)
        flow = tmp_path / "replayed.py"
        flow.write_text("from aiflow import Workflow, BashOperator, TaskAction\n"
                        "with Workflow(name='replayed'):\n"
                        "    BashOperator(name='keepalive', bash_command='sleep 100000', max_retries=3)\n"
                        "    BashOperator(name='t', bash_command='echo $AIFLOW_TRY_NUMBER >> ../ran.txt')"
                        ".action_on_event_received(TaskAction.START, 'go')\n")
        logs = tmp_path / "logs"
        logs.mkdir()

        def start(generation: int) -> list:  # type: ignore[type-arg]
            return [start_aiflow(["scheduler", "start"], env, logs / f"scheduler-{generation}.log"),
                    start_aiflow(["worker", "start"], env, logs / f"worker-{generation}.log")]

        services = start(0)
        try:
            wait_until(lambda: _topics_exist(config), 60, "the services created the topics")
            ops.upload_workflows(flow, config=config)
            execution_id = ops.start_workflow_execution("replayed", config=config, wait=60)
            ran = config.home / "working_dir" / "replayed" / execution_id / "ran.txt"
            with EventClient(config) as client:
                for n in range(1, 6):
                    client.send_event("go")
                    wait_until(lambda n=n: _tries(config, execution_id, "t") == [(i, "SUCCESS") for i in
                                                                               range(1, n + 1)], 60, f"try {n}")
            stop_processes(services)
            admin = clients.admin(config)
            groups = [f"{prefix}-router", f"{prefix}-scheduler", f"{prefix}-worker"]
            for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
                future.result()  # the offsets are gone with the group
            services = start(1)
            time.sleep(20)  # time enough to replay everything, which must change nothing
            assert ran.read_text().split() == ["1", "2", "3", "4", "5"]
            assert _tries(config, execution_id, "t") == [(i, "SUCCESS") for i in range(1, 6)]
            assert [e.id for e in ops.list_workflow_executions("replayed", config=config)] == [execution_id]
            with EventClient(config) as client:  # and the next event still starts exactly one try
                client.send_event("go")
            wait_until(lambda: _tries(config, execution_id, "t")[-1:] == [(6, "SUCCESS")], 60, "try 6")
            time.sleep(2)
            assert ran.read_text().split() == ["1", "2", "3", "4", "5", "6"]
            assert [p.poll() for p in services] == [None, None]
        finally:
            stop_processes(services)


def _topics_exist(config: Config) -> bool:
    from confluent_kafka import KafkaException

    from aiflow.kafka import topics

    try:
        return all(row["exists"] for row in topics.describe_topics(config, timeout=5))
    except (AIFlowError, KafkaException):  # a new topic's configs may not have reached every broker yet
        return False


def _status(config: Config, execution_id: str) -> str | None:
    info = ops.get_workflow_execution(execution_id, config=config)
    return info.status if info else None


def _statuses(config: Config, execution_id: str) -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    for t in ops.list_task_executions(execution_id, config=config):
        found.setdefault(t.task, []).append((t.try_number, t.status))
    return {task: sorted(tries) for task, tries in found.items()}


def _tries(config: Config, execution_id: str, task: str) -> list[tuple[int, str]]:
    return _statuses(config, execution_id).get(task, [])

