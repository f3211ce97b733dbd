"""The metrics' counting rules, without a broker: counts follow commits, the latency links a try to its event."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from aiflow import metrics
from aiflow.protocol.messages import Event, InboxMessage, TaskStatusReport
from aiflow.scheduler import core

SOURCE = "t.events/0/5"


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _execution() -> core.Execution:
    ex = core.Execution("e1", "default", "wf", core.Snapshot(1, "file:///s", "ab", "flow.py"), "MANUAL", "manual start")
    ex.tries["t"] = [core.TaskTry("t", 1, "QUEUED", f"rule 1 of t (START) on event 'go' at {SOURCE}")]
    return ex


def test_counts_are_added_only_once_the_step_commits() -> None:
    loop = metrics.LoopMetrics("scheduler")
    ex = _execution()
    before = _value("aiflow_tries_started_total")
    loop.outputs([core.StartTry(ex, "t", 1)])
    assert _value("aiflow_tries_started_total") == before
    loop.clear()  # the step rolled back: a new transaction begins
    loop.apply()
    assert _value("aiflow_tries_started_total") == before
    loop.outputs([core.StartTry(ex, "t", 1)])
    loop.apply()
    assert _value("aiflow_tries_started_total") == before + 1


def test_the_latency_runs_from_the_event_to_the_running_report_of_the_try_it_started() -> None:
    loop = metrics.LoopMetrics("scheduler")
    ex = _execution()
    sent = datetime.now(timezone.utc) - timedelta(seconds=10)
    count, total = _value("aiflow_event_to_running_seconds_count"), _value("aiflow_event_to_running_seconds_sum")
    loop.applying(InboxMessage.for_event("default", "wf", Event(key="go", send_time=sent), SOURCE))
    loop.outputs([core.StartTry(ex, "t", 1)])
    loop.apply()
    report = InboxMessage.for_report("default", "wf", TaskStatusReport("e1", "t", 1, "RUNNING"))
    loop.applying(replace(report, create_time=sent + timedelta(seconds=2)))
    loop.outputs([core.StatusChanged(ex, "t", 1, "RUNNING")])
    loop.apply()
    assert _value("aiflow_event_to_running_seconds_count") == count + 1
    assert abs(_value("aiflow_event_to_running_seconds_sum") - total - 2.0) < 0.01


def test_a_try_started_by_another_event_is_not_linked_to_the_event_at_hand() -> None:
    loop = metrics.LoopMetrics("scheduler")
    count = _value("aiflow_event_to_running_seconds_count")
    loop.applying(InboxMessage.for_event("default", "wf", Event(key="go", send_time=datetime.now(timezone.utc)),
                                         "t.events/0/50"))
    loop.outputs([core.StartTry(_execution(), "t", 1)])  # its cause names t.events/0/5, not /0/50
    loop.apply()
    loop.applying(InboxMessage.for_report("default", "wf", TaskStatusReport("e1", "t", 1, "RUNNING")))
    loop.outputs([core.StatusChanged(_execution(), "t", 1, "RUNNING")])
    loop.apply()
    assert _value("aiflow_event_to_running_seconds_count") == count


def test_the_web_server_serves_metrics_at_slash_metrics() -> None:
    app = FastAPI()
    metrics.mount_metrics(app)
    response = TestClient(app).get("/metrics", follow_redirects=False)
    assert response.status_code == 200
    assert "aiflow_tries_started_total" in response.text
