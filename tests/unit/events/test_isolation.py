"""A task of an isolated namespace may send events only into its namespace (worker.isolated_namespaces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiflow.config import Config
from aiflow.errors import ConfigError, EventError
from aiflow.events.client import EventClient
from aiflow.events.context import TASK_NAMESPACE_CONTEXT, TaskContext
from aiflow.protocol.messages import Event
from aiflow.scheduler.router import Routes
from aiflow.worker.service import task_environment

TASK = TaskContext(namespace="ml", workflow="training", execution_id="e1", task="train", try_number=1)


def _in_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated: str) -> EventClient:
    """An event client as a task of namespace `ml` gets it, from a worker with these isolated namespaces."""
    worker_config = Config.load(home=tmp_path, environ={"AIFLOW_WORKER_ISOLATED_NAMESPACES": isolated})
    for name, value in {**task_environment({}, worker_config), **TASK.to_env()}.items():
        monkeypatch.setenv(name, value)
    return EventClient(Config.load(home=tmp_path))  # no Kafka is reached before a send


def test_a_task_of_an_isolated_namespace_cannot_send_into_another(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    client = _in_task(monkeypatch, tmp_path, "other, ml")
    with pytest.raises(EventError, match="namespace 'ml' may not send events into namespace 'billing'.*isolated"):
        client.send_event("model_ready", "v1", namespace="billing")
    with pytest.raises(EventError, match="isolated"):
        client.send_events([("a", None)], namespace="billing")
    with pytest.raises(EventError, match="may not read events of namespace 'billing'"):
        client.list_events(namespace="billing")
    with pytest.raises(EventError, match="may not listen to events of namespace 'billing'"):
        client.register_listener(lambda events: None, ["a"], namespace="billing")  # type: ignore[arg-type]
    # Into its own namespace it is an ordinary event, stamped with the task's namespace for the router.
    event = client._new_event("model_ready", "v1", None, {"run": "7"})
    assert (event.namespace, dict(event.context)) == ("ml", {"run": "7", TASK_NAMESPACE_CONTEXT: "ml"})
    client.close()


def test_star_isolates_every_namespace_and_an_empty_list_none(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    with pytest.raises(EventError, match="isolated"):
        _in_task(monkeypatch, tmp_path, "*")._new_event("k", None, "billing", None)
    event = _in_task(monkeypatch, tmp_path, "")._new_event("k", None, "billing", None)
    assert event.namespace == "billing" and event.context[TASK_NAMESPACE_CONTEXT] == "ml"


def test_outside_a_task_the_client_sends_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIFLOW_EXECUTION_ID", raising=False)
    client = EventClient(Config.load(home=tmp_path, environ={"AIFLOW_WORKER_ISOLATED_NAMESPACES": "*"}))
    event = client._new_event("k", None, "billing", None)
    assert event.namespace == "billing" and TASK_NAMESPACE_CONTEXT not in event.context


def test_a_bad_isolated_namespace_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="worker.isolated_namespaces"):
        Config.load(home=tmp_path, environ={"AIFLOW_WORKER_ISOLATED_NAMESPACES": "ml, bad name"})


def _router(tmp_path: Path, isolated: str) -> Routes:
    return Routes(Config.load(home=tmp_path, environ={"AIFLOW_WORKER_ISOLATED_NAMESPACES": isolated}), lambda: 3)


def _event(namespace: str, task_namespace: str = "ml", from_task: bool = True) -> Event:
    if not from_task:
        return Event(key="k", namespace=namespace, context={TASK_NAMESPACE_CONTEXT: task_namespace})
    return Event(key="k", namespace=namespace, workflow="training", execution_id="e1", task="train", try_number=1,
                 context={TASK_NAMESPACE_CONTEXT: task_namespace})


def test_the_router_refuses_an_event_of_an_isolated_task_sent_elsewhere(tmp_path: Path) -> None:
    router = _router(tmp_path, "ml")
    assert "isolated namespace 'ml' sent an event into namespace 'billing'" in router.isolation_breach(
        _event("billing"))
    assert router.isolation_breach(_event("ml")) == ""
    assert router.isolation_breach(_event("billing", from_task=False)) == ""  # not a task's event
    assert router.isolation_breach(_event("billing", task_namespace="web")) == ""  # web is not isolated
    assert _router(tmp_path, "").isolation_breach(_event("billing")) == ""
