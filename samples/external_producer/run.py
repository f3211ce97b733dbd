"""Run the external-producer sample: a plain Kafka record starts a task in a running execution.

Needs aiflow running: `aiflow standalone -d`. Usage: python samples/external_producer/run.py
"""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Producer

from aiflow import ops
from aiflow.config import Config


def main() -> None:
    config = Config.load()
    ops.upload_workflows(Path(__file__).with_name("external_producer_workflow.py"))
    execution_id = ops.start_workflow_execution("external_producer")
    print(f"execution {execution_id} started; publishing a plain record with key file_landed")
    producer = Producer({"bootstrap.servers": config.bootstrap})
    producer.produce(f"{config.topic_prefix}.events", key=b"file_landed", value=b"/data/2026-11-25.csv")
    producer.flush(10)
    deadline = time.monotonic() + 120
    while not [t for t in ops.list_task_executions(execution_id) if t.task == "load" and t.status == "SUCCESS"]:
        if time.monotonic() > deadline:
            raise SystemExit("load did not run within 2 minutes")
        time.sleep(0.5)
    load = ops.get_task_execution(execution_id, "load")
    print(f"load ran: {load.status}, cause: {load.cause}")
    ops.stop_workflow_execution(execution_id)


if __name__ == "__main__":
    main()
