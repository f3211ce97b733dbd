"""A real 3-broker cluster (three KRaft nodes on loopback, topics with 3 replicas and 2 in sync):
the loss of the broker that leads the inbox and tasks partitions, and a rolling restart of all three,
lose nothing and fail nothing."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiflow import ops
from aiflow.config import Config
from aiflow.kafka import clients, topics
from tests.conftest import FULL_SCALE, make_config, own_broker, process_env, start_aiflow, stop_processes, wait_until
from tests.faults.test_kafka_faults import (
    BEATING,
    _statuses,
    _topics_exist,
    tick_events,
    tries_by_source,
    wait_for_every_tick_handled,
)

TASKS, EXECUTIONS = (50, 10) if FULL_SCALE else (25, 8)  # 500 tries at full scale
REPLICATED = {"AIFLOW_TOPIC_REPLICATION_FACTOR": "3", "AIFLOW_TOPIC_MIN_INSYNC_REPLICAS": "2"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with own_broker(tmp_path_factory.mktemp("cluster"), nodes=3) as broker:
        yield broker


def setup(tmp_path: Path, cluster: Any, **extra: str) -> tuple[dict[str, str], Config, list[Any]]:
    bootstrap = cluster.config.bootstrap
    env, prefix = process_env(tmp_path, bootstrap, **REPLICATED, **extra)
    config = make_config(tmp_path / "home", bootstrap, AIFLOW_TOPIC_PREFIX=prefix, **REPLICATED)
    (tmp_path / "logs").mkdir()
    services = [start_aiflow(["scheduler", "start"], env, tmp_path / "logs" / "scheduler.log"),
                start_aiflow(["worker", "start", "--slots", "8"], env, tmp_path / "logs" / "worker.log")]
    wait_until(lambda: _topics_exist(config), 90, "the services created the topics")
    return env, config, services


def leader_of_most(config: Config) -> int:
    """The node that leads the most partitions of the inbox and tasks topics."""
    metadata = clients.admin(config).list_topics(timeout=10).topics
    leaders: Counter[int] = Counter()
    for role in (topics.INBOX, topics.TASKS):
        for partition in metadata[topics.name(config, role)].partitions.values():
            leaders[partition.leader] += 1
    return leaders.most_common(1)[0][0]


def test_losing_the_leader_of_the_inbox_and_tasks_partitions_loses_and_doubles_no_try(
        tmp_path: Path, cluster: Any) -> None:
    env, config, services = setup(tmp_path, cluster, AIFLOW_WORKER_STOP_GRACE="2")
    try:
        replicas = {len(p.replicas) for p in clients.admin(config).list_topics(timeout=10)
                    .topics[topics.name(config, topics.INBOX)].partitions.values()}
        assert replicas == {3}
        flow = tmp_path / "many.py"
        flow.write_text("from aiflow import Workflow, BashOperator\n"
                        "with Workflow(name='many'):\n"
                        f"    for i in range({TASKS}):\n"
                        "        BashOperator(name=f't{i}', bash_command=f'echo $AIFLOW_EXECUTION_ID t{i} "
                        f"$AIFLOW_TRY_NUMBER >> {tmp_path}/ran.txt')\n")
        ops.upload_workflows(flow, config=config)
        executions = [ops.start_workflow_execution("many", config=config, wait=60) for _ in range(EXECUTIONS)]
        ran = tmp_path / "ran.txt"
        wait_until(lambda: ran.exists() and len(ran.read_text().splitlines()) >= 20, 120, "the first tries")
        victim = leader_of_most(config)
        cluster.kill_node(victim)
        time.sleep(10)
        cluster.start_node(victim)
        wait_until(lambda: all(_status_of(config, e) == "SUCCESS" for e in executions), 600,
                   lambda: Counter(_status_of(config, e) for e in executions))
        got = Counter(ran.read_text().splitlines())
        expected = Counter({f"{e} t{i} 1": 1 for e in executions for i in range(TASKS)})
        assert got == expected, f"{got - expected} extra, {expected - got} missing"
        assert [p.poll() for p in services] == [None, None]
    finally:
        stop_processes(services)


def test_a_rolling_restart_of_every_broker_fails_and_loses_nothing(tmp_path: Path, cluster: Any) -> None:
    env, config, services = setup(tmp_path, cluster)
    try:
        (tmp_path / "beating.py").write_text(BEATING)
        ops.upload_workflows(tmp_path / "beating.py", config=config)
        execution_id = ops.start_workflow_execution("beating", config=config, wait=60)
        workdir = config.home / "working_dir" / "beating" / execution_id
        wait_until(lambda: len(tick_events(config)) >= 5, 60, "the first events")
        for node in cluster.nodes:
            cluster.stop_node(node.id)  # a controlled shutdown, as in maintenance
            time.sleep(5)
            cluster.start_node(node.id)
            time.sleep(5)
        count = len(tick_events(config))
        wait_until(lambda: len(tick_events(config)) >= count + 5, 60, "events after the restarts")
        (workdir / "stop-beating").touch()
        wait_for_every_tick_handled(config, execution_id)
        assert tries_by_source(config, execution_id) == Counter(tick_events(config))
        statuses = _statuses(config, execution_id)
        assert statuses.pop("beat") == [(1, "RUNNING")]
        assert all(s == "SUCCESS" for tries in statuses.values() for _, s in tries), statuses
        assert _status_of(config, execution_id) == "RUNNING"
        assert [p.poll() for p in services] == [None, None]
    finally:
        stop_processes(services)


def _status_of(config: Config, execution_id: str) -> str | None:
    info = ops.get_workflow_execution(execution_id, config=config)
    return info.status if info else None
