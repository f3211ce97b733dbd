"""The projector loses nothing when its database goes away: PostgreSQL is stopped and started again in
the middle of a stream of changelog records, and every execution ends up in its latest state."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from aiflow import ops
from aiflow.config import Config
from aiflow.kafka import clients, sending, topics
from aiflow.kafka.readers import read_dead_letters
from aiflow.protocol.messages import StateRecord
from aiflow.scheduler import core
from aiflow.store.db import Store
from aiflow.store.models import ExecutionRow
from aiflow.store.projector import Projector
from tests.conftest import PostgresCluster, make_config, postgres_cluster

FLOW = """
from aiflow import Workflow, BashOperator
with Workflow(name="projected"):
    BashOperator(name="t", bash_command="true")
"""
EXECUTIONS = 30


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    cluster = postgres_cluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


def state(execution_id: str, version: int, status: str) -> StateRecord:
    ex = core.Execution(execution_id, "default", "projected", core.Snapshot(1, "file:///x.zip", "0" * 64, "flow.py"),
                        "MANUAL", "test", status=status, create_time=time.time(),
                        tries={"t": [core.TaskTry("t", 1, "SUCCESS" if status == "SUCCESS" else "RUNNING", "test")]})
    return StateRecord("EXECUTION", execution_id, "default", "projected", version, json.dumps(ex.to_dict()))


def test_a_database_restart_mid_stream_skips_no_update(kafka_bootstrap: str, tmp_path: Path,
                                                       cluster: PostgresCluster) -> None:
    config: Config = make_config(tmp_path / "home", kafka_bootstrap, AIFLOW_DB_URI=cluster.create_database())
    topics.create_topics(config)
    (tmp_path / "flow.py").write_text(FLOW)
    ops.upload_workflows(tmp_path / "flow.py", config=config)
    producer = clients.producer(config, role="test")

    def send(records: list[StateRecord]) -> None:
        for record in records:
            sending.produce(producer, config, record.to_record(0))
        assert producer.flush(30) == 0

    projector = Projector(config)
    stop = threading.Event()
    thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        ids = [f"e{i:02d}" for i in range(EXECUTIONS)]
        send([state(e, 1, "RUNNING") for e in ids])
        wait_for(lambda: statuses(config) == dict.fromkeys(ids, "RUNNING"), "the first versions")

        cluster.stop()
        # While the database is down: the last word on half of them, and one record the database
        # will refuse for good (a status longer than its column).
        send([state(e, 2, "SUCCESS") for e in ids[: EXECUTIONS // 2]] + [state("too-long", 1, "X" * 40)])
        time.sleep(4)  # the projector fails and retries meanwhile
        cluster.start()
        send([state(e, 2, "SUCCESS") for e in ids[EXECUTIONS // 2:]])

        wanted = dict.fromkeys(ids, "SUCCESS")
        wait_for(lambda: statuses(config) == wanted, "every execution's latest version", timeout=90)
        assert thread.is_alive(), "the projector stopped"
        wait_for(lambda: len(read_dead_letters(config)) == 1, "the refused record's dead letter")
        [letter] = read_dead_letters(config)
        assert letter.reporter == "projector" and "cannot be applied" in letter.reason
        assert letter.source.startswith(topics.name(config, topics.STATE))
    finally:
        stop.set()
        thread.join(timeout=60)


def statuses(config: Config) -> dict[str, str]:
    try:
        with Store(config).session() as s:
            return {row.id: row.status for row in s.scalars(select(ExecutionRow))}
    except Exception:  # the database is down
        return {}


def wait_for(check: object, what: str, timeout: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
