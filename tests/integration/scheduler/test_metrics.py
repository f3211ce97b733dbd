"""The services' Prometheus metrics, scraped over HTTP, and `aiflow status`, on a running aiflow."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Mapping

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from aiflow import EventClient, metrics, ops
from aiflow.cli.status_cmd import status
from tests.integration.scheduler.conftest import System

TASKS = 50
FAN = "\n".join([
    "from aiflow import Workflow, BashOperator, TaskAction",
    "",
    "with Workflow(name='fan'):",
    *[f"    BashOperator(name='t{i}', bash_command='true').action_on_event_received(TaskAction.START, 'go{i}')"
      for i in range(TASKS)],
    "",
])

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_each_routed_event_started_try_and_its_latency(system: System) -> None:
    system.upload(FAN)
    execution_id = ops.start_workflow_execution("fan", config=system.config)
    system.wait_for(lambda: system.status(execution_id) == "RUNNING", what="the execution to run")
    port = _free_port()
    server = metrics.serve(system.config, "metrics.scheduler_port", port=port)
    assert server is not None
    try:
        before = _scrape(port)
        with EventClient(system.config) as client:
            for i in range(TASKS):
                client.send_event(f"go{i}")
        system.wait_for(lambda: system.status(execution_id) == "SUCCESS", timeout=120,
                        what="every task to run once")

        def counted() -> bool:
            after = _scrape(port)
            return _delta(after, before, "aiflow_event_to_running_seconds_count") >= TASKS

        system.wait_for(counted, what="the latency of every try to be observed")
        after = _scrape(port)
    finally:
        server.shutdown()

    assert _delta(after, before, "aiflow_router_records_total", outcome="routed") == TASKS
    assert _delta(after, before, "aiflow_router_records_total", outcome="dead_lettered") == 0
    assert _delta(after, before, "aiflow_tries_started_total") == TASKS
    assert _delta(after, before, "aiflow_tries_finished_total", status="SUCCESS") == TASKS
    assert _delta(after, before, "aiflow_scheduler_inputs_total", kind="EVENT") >= TASKS
    assert _delta(after, before, "aiflow_event_to_running_seconds_count") == TASKS
    assert _delta(after, before, "aiflow_event_to_running_seconds_bucket", le="+Inf") == TASKS
    assert 0 < _delta(after, before, "aiflow_event_to_running_seconds_sum") < TASKS * 60
    assert _delta(after, before, "aiflow_dead_letters_total", reporter="router") == 0
    slots = after[("aiflow_worker_slots", frozenset({("state", "busy")}))] + \
        after[("aiflow_worker_slots", frozenset({("state", "free")}))]
    assert slots >= 6  # the fixture's worker, and any other of this test process
    assert after[("aiflow_scheduler_state_restore_seconds_count", frozenset())] >= 1


def test_status_lists_the_running_services_workers_and_lag(system: System) -> None:
    env = {"AIFLOW_HOME": str(system.config.home), "AIFLOW_KAFKA_BOOTSTRAP": system.config.bootstrap,
           "AIFLOW_TOPIC_PREFIX": system.config.topic_prefix, "AIFLOW_WORKER_HEARTBEAT_INTERVAL": "1"}
    prefix = system.config.topic_prefix
    found: dict[str, object] = {}

    def listed() -> bool:
        result = CliRunner().invoke(status, ["-o", "json"], env=env)
        if result.exit_code != 0:  # fresh topics: a partition may have no leader for a moment
            assert result.output.startswith("Error: Kafka at "), result.output
            return False
        found.update(json.loads(result.output))
        roles = {r["role"] for r in found["services"] if r["member_id"]}  # type: ignore[attr-defined]
        return {"scheduler", "router", "projector", "worker"} <= roles and bool(found["workers"])

    system.wait_for(listed, what="every service in its group and a worker heard")
    services = found["services"]
    assert isinstance(services, list)
    scheduler = [r for r in services if r["group"] == f"{prefix}-scheduler" and r["member_id"]]
    assert len(scheduler) == 1 and scheduler[0]["partitions"] == "inbox/0,1,2"
    assert scheduler[0]["client_id"].startswith("aiflow-scheduler-")
    workers = found["workers"]
    assert isinstance(workers, list) and workers[0]["free_slots"] == 6
    lag = found["lag"]
    assert isinstance(lag, list)
    assert {(r["group"], r["topic"]) for r in lag} >= {(f"{prefix}-scheduler", f"{prefix}.inbox"),
                                                     (f"{prefix}-router", f"{prefix}.events")}

    table = CliRunner().invoke(status, [], env=env)
    assert table.exit_code == 0, table.output
    assert "1 schedulers" in table.output and "Workers heard" in table.output


def test_status_without_kafka_says_so_in_one_line(system: System) -> None:
    env = {"AIFLOW_HOME": str(system.config.home), "AIFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    result = CliRunner().invoke(status, ["-o", "json"], env=env)
    assert result.exit_code == 1
    assert result.output.startswith("Error: Kafka at 127.0.0.1:1 does not answer")
    assert "Traceback" not in result.output
