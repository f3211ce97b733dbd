"""Client mode's wiring: which ops functions go to the REST API, with the same signatures, and what a client
configuration accepts."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from aiflow import ops
from aiflow.config import Config
from aiflow.errors import AIFlowError, ConfigError
from aiflow.ops import remote

# Public functions that touch the store only through other public functions, or not at all.
TRANSPORT_FREE = {"delete_workflow_schedules", "delete_workflow_snapshots", "delete_workflow_triggers",
                  "inspect_workflow_file", "new_execution_id", "stop_workflow_executions", "wait_for_execution",
                  # a try's output: the store through get_task_execution, the output from a file or Kafka
                  "follow_task_log", "read_task_log"}
REFUSED = {"task_log_path"}  # the log is a file on the worker's machine (read_task_log reads it from anywhere)


def public_functions() -> dict[str, object]:
    return {name: getattr(ops, name) for name in ops.__all__ if inspect.isfunction(getattr(ops, name))}


def test_every_store_function_goes_through_the_api_with_the_same_signature() -> None:
    for name, f in public_functions().items():
        if name in TRANSPORT_FREE:
            assert not hasattr(f, "__wrapped__"), name
            continue
        assert hasattr(f, "__wrapped__"), f"{name} is not decorated with _via_api"
        if name in REFUSED:
            assert not hasattr(remote, name)
            continue
        local = inspect.signature(f.__wrapped__)  # type: ignore[attr-defined]
        assert str(inspect.signature(getattr(remote, name))) == str(local), name


def test_a_function_the_api_lacks_is_refused_without_opening_a_database(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={"AIFLOW_API_URL": "http://127.0.0.1:1",
                                                 "AIFLOW_DB_URI": f"sqlite:///{tmp_path}/none/aiflow.db"})
    with pytest.raises(AIFlowError, match="not available through the API yet: task_log_path"):
        ops.task_log_path("0123456789ab", "train", config=config)


def test_api_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api.url"):
        Config.load(home=tmp_path, environ={"AIFLOW_API_URL": "127.0.0.1:8080"})
    assert Config.load(home=tmp_path, environ={"AIFLOW_API_URL": "https://aiflow.example:8443/"}).values["api.url"]
