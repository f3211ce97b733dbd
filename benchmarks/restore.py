"""How long a scheduler takes to restore its state: `python benchmarks/restore.py [--quick]`.

A fresh state topic gets 100,000 settled execution records (marked settled, as the scheduler writes
them), 10,000 executions that were settled and then tombstoned by the projector (a record and its
tombstone each), and 1,000 active executions with a running try; the topic is not compacted yet, so
the restore reads every record. Then a Scheduler's `_restore` of all the partitions is timed: read
to the end (read_committed), keep the last record of each key, decode only the active ones. For
comparison, the same read decoding the last record of every key (what a reader that needs the
settled bodies, like `db rebuild`, pays) is timed too.

Against the broker of AIFLOW_KAFKA_BOOTSTRAP if set (topics with a prefix of their own), else in a
local broker started like the other benchmarks (run.py, which also runs this one as `restore`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiflow import Operator, Workflow
from aiflow.config import Config
from aiflow.kafka import clients, sending, topics
from aiflow.kafka.readers import SETTLED_HEADER, read_state
from aiflow.protocol.messages import StateRecord
from aiflow.protocol.records import Record
from aiflow.scheduler import core
from aiflow.scheduler.service import Scheduler
from aiflow.sdk.status import ExecutionType

TARGET_S = 5.0
SNAPSHOT = core.Snapshot(1, "file:///bench.zip", "0" * 64, "flow.py")


def _workflow() -> Workflow:
    with Workflow(name="restored", namespace="default") as wf:
        Operator("prepare")
        Operator("train")
    return wf


def _execution(wf: Workflow, execution_id: str, settled: bool, now: float) -> core.Execution:
    """An execution as the core leaves it: two tasks, one try each, run to the end (or running)."""
    ex, _ = core.start_execution(wf, execution_id, SNAPSHOT, ExecutionType.MANUAL, "benchmark", now)
    for task in wf.tasks:
        core.on_report(ex, wf, task, 1, "RUNNING", "", "bench-worker", now + 1)
        if settled:
            core.on_report(ex, wf, task, 1, "SUCCESS", "", "bench-worker", now + 2)
    return ex


def write_state(config: Config, settled: int, tombstoned: int, active: int) -> dict[str, int]:
    """Write the state records (through one idempotent producer) and return how many of each."""
    wf = _workflow()
    partitions = topics.partition_count(config, topics.STATE)
    producer = clients.producer(config, role="bench")
    now = time.time()
    active_ids = []

    def put(ex: core.Execution, marked: bool, index: int) -> int:
        partition = index % partitions
        record = StateRecord("EXECUTION", ex.id, ex.namespace, ex.workflow, 5,
                             json.dumps(ex.to_dict())).to_record(partition)
        if marked:
            record = Record(record.role, record.key, record.value, partition, ((SETTLED_HEADER, b"1"),))
        sending.produce(producer, config, record)
        producer.poll(0)
        return partition

    for i in range(settled + tombstoned + active):
        kind = "settled" if i < settled else "tombstoned" if i < settled + tombstoned else "active"
        ex = _execution(wf, f"{kind[0]}{i:08d}", kind != "active", now)
        partition = put(ex, kind != "active", i)
        if kind == "tombstoned":
            sending.produce(producer, config, Record(topics.STATE, ex.id, None, partition))
        elif kind == "active":
            active_ids.append(ex.id)
    assert producer.flush(120) == 0
    return {"settled": settled, "tombstoned": tombstoned, "active": len(active_ids)}


def measure(config: Config, quick: bool = False) -> dict[str, Any]:
    settled, tombstoned, active = (20_000, 2_000, 200) if quick else (100_000, 10_000, 1_000)
    written = write_state(config, settled, tombstoned, active)
    wf = _workflow()
    scheduler = Scheduler(config)
    scheduler._workflow_of = lambda ex: wf  # type: ignore[method-assign]  # no snapshot to load: the restore is timed
    partitions = range(topics.partition_count(config, topics.STATE))
    try:
        started = time.perf_counter()
        scheduler._restore([_Assigned(p) for p in partitions])  # type: ignore[misc]
        elapsed = time.perf_counter() - started
        assert len(scheduler.executions) == active, len(scheduler.executions)
        assert len(scheduler.finished) == settled, len(scheduler.finished)
    finally:
        scheduler.loop.close()
        scheduler.definitions.close()
    started = time.perf_counter()
    everything = read_state(config, partitions, "bench")
    decode_all = time.perf_counter() - started
    assert len(everything) == settled + active
    return {"restore_s": elapsed, "read_and_decode_every_key_s": decode_all, **written,
            "records": settled + 2 * tombstoned + active, "partitions": len(partitions)}


class _Assigned:
    """What `_restore` reads of an assigned partition."""

    def __init__(self, partition: int) -> None:
        self.partition = partition


def _fresh_config(bootstrap: str) -> Config:
    home = Path(tempfile.mkdtemp(prefix="aiflow-bench-restore-"))
    environ = {"AIFLOW_KAFKA_BOOTSTRAP": bootstrap, "AIFLOW_TOPIC_PREFIX": f"b{uuid.uuid4().hex[:8]}"}
    config = Config.load(home=home, environ=environ)
    topics.create_topics(config)
    return config


def report(figures: dict[str, Any]) -> str:
    return (f"restore of {figures['partitions']} state partitions holding {figures['records']:,} records "
            f"({figures['settled']:,} settled, {figures['tombstoned']:,} tombstoned, {figures['active']:,} active): "
            f"{figures['restore_s']:.2f} s (target <= {TARGET_S:.0f} s); reading them and decoding the last "
            f"record of every key: {figures['read_and_decode_every_key_s']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fifth of the records: a smoke run")
    args = parser.parse_args()
    bootstrap = os.environ.get("AIFLOW_KAFKA_BOOTSTRAP")
    if bootstrap:
        figures = measure(_fresh_config(bootstrap), args.quick)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from run import Lab

        lab = Lab()
        try:
            lab.start_broker()
            figures = measure(lab.config(), args.quick)
        finally:
            lab.close()
    print(report(figures))


if __name__ == "__main__":
    main()
