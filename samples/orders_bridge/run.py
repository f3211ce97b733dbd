"""Run the orders sample: JSON rows on an `orders` topic start a task in a running execution.

Needs aiflow running: `aiflow standalone -d`. Usage: python samples/orders_bridge/run.py
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from aiflow import ops
from aiflow.config import Config
from aiflow.connectors.kafka_topic import TopicBridge
from aiflow.connectors.mapping import Mapping

TOPIC = "orders"


def main() -> None:
    config = Config.load()
    admin = AdminClient({"bootstrap.servers": config.bootstrap})
    if TOPIC not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result()
    ops.upload_workflows(Path(__file__).with_name("orders_workflow.py"))
    execution_id = ops.start_workflow_execution("orders")
    print(f"execution {execution_id} started")

    stop = threading.Event()
    bridge = TopicBridge(config, TOPIC, Mapping(key="orders.{status}", value="id"), name="orders-sample")
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()

    producer = Producer({"bootstrap.servers": config.bootstrap})
    producer.produce(TOPIC, json.dumps({"id": 1001, "status": "paid", "total": 30}).encode())
    producer.produce(TOPIC, json.dumps({"id": 1002, "status": "new", "total": 12}).encode())
    producer.flush(10)
    print("published order 1001 (paid) and 1002 (new) as JSON rows on the orders topic")
    deadline = time.monotonic() + 120
    while not [t for t in ops.list_task_executions(execution_id) if t.task == "ship" and t.status == "SUCCESS"]:
        if time.monotonic() > deadline:
            raise SystemExit("ship did not run within 2 minutes")
        time.sleep(0.5)
    ship = ops.get_task_execution(execution_id, "ship")
    print(f"ship ran: {ship.status}, cause: {ship.cause}")
    stop.set()
    thread.join(timeout=30)
    ops.stop_workflow_execution(execution_id)


if __name__ == "__main__":
    main()
