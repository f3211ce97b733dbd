"""Client mode: `aiflow.ops` through the REST API of a web server, for a machine without database credentials.

With `api.url` set, each ops function the API offers comes here (the `_via_api` decorator of `_common`)
and asks the server, which runs the same function against its database. Each function below has the
signature of its ops namesake and returns the same *Info records, rebuilt from the JSON, and raises the
same exceptions: 404 NotFound, 409 Conflict, 400 the error the call raises for bad input (WorkflowFileError
for a file that does not load, WorkflowDefinitionError for a bad name or schedule), 401 ConfigError,
503 StoreUnavailable or KafkaUnavailable. An ops function without a namesake here is refused in client mode.

What the API's answers leave out stays out: a WorkflowInfo that is listed, uploaded, enabled or disabled
has an empty `definition` (`get_workflow` has its tasks, rules and event keys), and a trigger can be added
with built-in conditions only (a condition class of the user's own is imported where it is added).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from aiflow.config import Config, read_token
from aiflow.errors import (
    AIFlowError,
    ConfigError,
    Conflict,
    KafkaUnavailable,
    NotFound,
    StoreUnavailable,
    WorkflowDefinitionError,
    WorkflowFileError,
)
from aiflow.ops._dispatch import _config, _ns
from aiflow.ops.executions import ExecutionInfo, TaskExecutionInfo, wait_for_execution
from aiflow.ops.namespaces import NamespaceInfo
from aiflow.ops.snapshots import SnapshotInfo
from aiflow.ops.workflow_rules import ScheduleInfo, TriggerInfo
from aiflow.ops.workflows import WorkflowInfo
from aiflow.sdk.conditions import WorkflowRule, condition_to_spec

PAGE = 1000  # the most executions the API lists at once


class _Api:
    """The REST API of `config`'s `api.url`, called with its bearer token."""

    def __init__(self, config: Config) -> None:
        self.url = str(config.values["api.url"]).rstrip("/")
        self.token = read_token("AIFLOW_API_TOKEN", str(config.values["api.token_file"]) or None, "API")
        self.timeout = float(config.values["api.timeout"])

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
             files: list[tuple[str, tuple[str, bytes]]] | None = None,
             bad_input: type[AIFlowError] = AIFlowError) -> Any:
        """The decoded answer to `method /api/v1<path>`; a refusal raises the matching AIFlowError
        (`bad_input` for a 400)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            with httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=self.timeout) as client:
                response = client.request(method, path, params=query, json=body, files=files)
        except httpx.TransportError as exc:
            raise AIFlowError(f"cannot reach the aiflow API at {self.url} ({exc or type(exc).__name__}): is "
                              "`aiflow webserver start` running there? (api.url, $AIFLOW_API_URL)") from None
        if response.is_success:
            return response.json() if response.content else None
        raise self._error(response, f"{method} /api/v1{path}", bad_input)

    def _error(self, response: httpx.Response, what: str, bad_input: type[AIFlowError]) -> AIFlowError:
        try:
            detail = str(response.json()["detail"])
        except (ValueError, KeyError, TypeError):
            detail = response.text.strip() or response.reason_phrase
        status = response.status_code
        if status == 401:
            if self.token:
                return ConfigError(f"the aiflow API at {self.url} refused the token: set AIFLOW_API_TOKEN or "
                                   "api.token_file to the web server's token")
            return ConfigError(f"the aiflow API at {self.url} requires a token: set AIFLOW_API_TOKEN or "
                               "api.token_file")
        if status == 404 and detail == "Not Found":  # the router's own answer: no such route
            return AIFlowError(f"the aiflow API at {self.url} does not offer {what}: is the web server older "
                               "than this client?")
        if status == 404:
            return NotFound(detail)
        if status == 409:
            return Conflict(detail)
        if status == 400:
            return bad_input(detail)
        if status == 503:
            return KafkaUnavailable(detail) if "kafka" in detail.lower() else StoreUnavailable(detail)
        return AIFlowError(f"the aiflow API at {self.url} answered {status} to {what}: {detail}")


def _api(config: Config | None) -> _Api:
    return _Api(_config(config))


def _seg(name: str) -> str:
    """A name as one path segment."""
    return quote(name, safe="")


def _wf_path(config: Config | None, namespace: str | None, workflow: str) -> str:
    return f"/namespaces/{_seg(_ns(_config(config), namespace))}/workflows/{_seg(workflow)}"


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- namespaces ------------------------------------------------------------------------------
def _namespace(d: dict[str, Any]) -> NamespaceInfo:
    return NamespaceInfo(d["name"], dict(d["properties"]), _when(d["create_time"]))


def add_namespace(name: str, properties: dict[str, str] | None = None, *,
                  config: Config | None = None) -> NamespaceInfo:
    return _namespace(_api(config).call("POST", "/namespaces", body={"name": name, "properties": properties or {}},
                                        bad_input=WorkflowDefinitionError))


def get_namespace(name: str, *, config: Config | None = None) -> NamespaceInfo | None:
    try:
        return _namespace(_api(config).call("GET", f"/namespaces/{_seg(name)}"))
    except NotFound:
        return None


def update_namespace(name: str, properties: dict[str, str], *, config: Config | None = None) -> NamespaceInfo:
    return _namespace(_api(config).call("PUT", f"/namespaces/{_seg(name)}", body={"properties": properties}))


def list_namespaces(limit: int | None = None, offset: int | None = None, *,
                    config: Config | None = None) -> list[NamespaceInfo]:
    found = _api(config).call("GET", "/namespaces", params={"limit": limit, "offset": offset})
    return [_namespace(d) for d in found]


def delete_namespace(name: str, *, config: Config | None = None) -> None:
    _api(config).call("DELETE", f"/namespaces/{_seg(name)}")


# -- workflows -------------------------------------------------------------------------------
def _workflow(d: dict[str, Any]) -> WorkflowInfo:
    definition = {"name": d["name"], "namespace": d["namespace"], "tasks": d["tasks"], "rules": d["rules"],
                  "event_keys": d["event_keys"]} if "tasks" in d else {}
    return WorkflowInfo(d["namespace"], d["name"], d["version"], d["is_enabled"], d["workflow_file"],
                        _when(d["create_time"]), _when(d["update_time"]), definition)


def upload_workflows(workflow_file_path: str | os.PathLike[str],
                     artifacts: Sequence[str | os.PathLike[str]] | None = None, *,
                     namespace: str | None = None, config: Config | None = None) -> list[WorkflowInfo]:
    path = Path(workflow_file_path)
    if not path.is_file():
        raise WorkflowFileError(f"{workflow_file_path}: no such file")
    files = [("file", (path.name, path.read_bytes()))]
    for artifact in artifacts or []:
        a = Path(artifact)
        if not a.is_file():
            raise WorkflowFileError(f"{artifact}: over the API an artifact is a file (send a folder as a zip)")
        files.append(("files", (a.name, a.read_bytes())))
    found = _api(config).call("POST", f"/namespaces/{_seg(_ns(_config(config), namespace))}/workflows", files=files,
                              bad_input=WorkflowFileError)
    return [_workflow(d) for d in found]


def get_workflow(workflow_name: str, namespace: str | None = None, *,
                 config: Config | None = None) -> WorkflowInfo | None:
    try:
        return _workflow(_api(config).call("GET", _wf_path(config, namespace, workflow_name)))
    except NotFound:
        return None


def list_workflows(namespace: str | None = None, limit: int | None = None, offset: int | None = None, *,
                   config: Config | None = None) -> list[WorkflowInfo]:
    found = _api(config).call("GET", f"/namespaces/{_seg(_ns(_config(config), namespace))}/workflows",
                              params={"limit": limit, "offset": offset})
    return [_workflow(d) for d in found]


def disable_workflow(workflow_name: str, namespace: str | None = None, *, config: Config | None = None) -> WorkflowInfo:
    return _workflow(_api(config).call("POST", _wf_path(config, namespace, workflow_name) + "/disable"))


def enable_workflow(workflow_name: str, namespace: str | None = None, *, config: Config | None = None) -> WorkflowInfo:
    return _workflow(_api(config).call("POST", _wf_path(config, namespace, workflow_name) + "/enable"))


def delete_workflow(workflow_name: str, namespace: str | None = None, *, config: Config | None = None) -> None:
    _api(config).call("DELETE", _wf_path(config, namespace, workflow_name))


# -- snapshots -------------------------------------------------------------------------------
def _snapshot(d: dict[str, Any]) -> SnapshotInfo:
    return SnapshotInfo(d["namespace"], d["workflow"], d["version"], d["uri"], d["sha256"], d["workflow_file"],
                        _when(d["create_time"]), dict(d.get("definition", {})))


def list_workflow_snapshots(workflow_name: str, namespace: str | None = None, limit: int | None = None,
                            offset: int | None = None, *, config: Config | None = None) -> list[SnapshotInfo]:
    found = [_snapshot(d) for d in _api(config).call("GET", _wf_path(config, namespace, workflow_name) + "/snapshots")]
    start = offset or 0  # the API lists them all (a workflow has few)
    return found[start:start + limit if limit is not None else None]


def get_workflow_snapshot(workflow_name: str, version: int, namespace: str | None = None, *,
                          config: Config | None = None) -> SnapshotInfo:
    return _snapshot(_api(config).call("GET", _wf_path(config, namespace, workflow_name) + f"/snapshots/{version}"))


def delete_workflow_snapshot(workflow_name: str, version: int, namespace: str | None = None, *,
                             config: Config | None = None) -> None:
    _api(config).call("DELETE", _wf_path(config, namespace, workflow_name) + f"/snapshots/{version}")


# -- executions and tasks --------------------------------------------------------------------
def _execution(d: dict[str, Any]) -> ExecutionInfo:
    return ExecutionInfo(d["id"], d["namespace"], d["workflow"], d["snapshot_version"], d["status"], d["run_type"],
                         _time(d["begin_date"]), _time(d["end_date"]), d["cause"], d.get("message", ""))


def _task(d: dict[str, Any]) -> TaskExecutionInfo:
    return TaskExecutionInfo(d["execution_id"], d["task"], d["try_number"], d["status"], _time(d["begin_date"]),
                             _time(d["end_date"]), d["message"], d["cause"], d["worker"])


def start_workflow_execution(workflow_name: str, namespace: str | None = None, *, config: Config | None = None,
                             wait: float = 10.0) -> str:
    config = _config(config)
    execution_id = str(_api(config).call("POST", _wf_path(config, namespace, workflow_name) + "/executions")["id"])
    if wait > 0:
        wait_for_execution(execution_id, wait, config=config)
    return execution_id


def prepare_to_send(*, config: Config | None = None, ask_schedulers: bool = False) -> None:
    pass  # the server sends: nothing to make ready here


def scheduler_running(*, config: Config | None = None) -> bool | None:
    return None  # the API does not say, and Kafka need not be reachable from a client


def get_workflow_execution(execution_id: str, *, config: Config | None = None) -> ExecutionInfo | None:
    try:
        return _execution(_api(config).call("GET", f"/executions/{_seg(execution_id)}"))
    except NotFound:
        return None


def list_workflow_executions(workflow_name: str, namespace: str | None = None, limit: int | None = None,
                             offset: int | None = None, *, status: str | None = None,
                             config: Config | None = None) -> list[ExecutionInfo]:
    api, path = _api(config), _wf_path(config, namespace, workflow_name) + "/executions"
    found: list[ExecutionInfo] = []
    start = offset or 0
    while limit is None or len(found) < limit:  # the API answers a page of at most PAGE at a time
        size = PAGE if limit is None else min(PAGE, limit - len(found))
        page = api.call("GET", path, params={"status": status, "limit": size, "offset": start + len(found)})
        found.extend(_execution(d) for d in page)
        if len(page) < size:
            break
    return found


def stop_workflow_execution(workflow_execution_id: str, *, config: Config | None = None) -> None:
    _api(config).call("POST", f"/executions/{_seg(workflow_execution_id)}/stop")


def delete_workflow_execution(workflow_execution_id: str, *, config: Config | None = None) -> None:
    _api(config).call("DELETE", f"/executions/{_seg(workflow_execution_id)}")


def _task_action(execution_id: str, task_name: str, action: str, config: Config | None) -> None:
    _api(config).call("POST", f"/executions/{_seg(execution_id)}/tasks/{_seg(task_name)}/{action}")


def start_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    _task_action(workflow_execution_id, task_name, "start", config)


def stop_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    _task_action(workflow_execution_id, task_name, "stop", config)


def restart_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    _task_action(workflow_execution_id, task_name, "restart", config)


def list_task_executions(workflow_execution_id: str, *, config: Config | None = None) -> list[TaskExecutionInfo]:
    return [_task(d) for d in _api(config).call("GET", f"/executions/{_seg(workflow_execution_id)}")["tasks"]]


def get_task_execution(workflow_execution_id: str, task_name: str, try_number: int | None = None, *,
                       config: Config | None = None) -> TaskExecutionInfo:
    return _task(_api(config).call("GET", f"/executions/{_seg(workflow_execution_id)}/tasks/{_seg(task_name)}",
                                   params={"try_number": try_number}))


# -- triggers and schedules ------------------------------------------------------------------
def _trigger(d: dict[str, Any]) -> TriggerInfo:
    return TriggerInfo(d["id"], d["namespace"], d["workflow"], dict(d["condition"]), d["is_paused"],
                       _when(d["create_time"]), d.get("pause_reason", ""))


def _schedule(d: dict[str, Any]) -> ScheduleInfo:
    return ScheduleInfo(d["id"], d["namespace"], d["workflow"], d["expression"], d["is_paused"],
                        _when(d["create_time"]), d.get("pause_reason", ""))


def add_workflow_trigger(rule: WorkflowRule, workflow_name: str, namespace: str | None = None, *,
                         config: Config | None = None) -> TriggerInfo:
    if not isinstance(rule, WorkflowRule):
        raise WorkflowFileError("add_workflow_trigger needs a WorkflowRule(condition)")
    body = {"condition": condition_to_spec(rule.condition)}
    return _trigger(_api(config).call("POST", _wf_path(config, namespace, workflow_name) + "/triggers", body=body,
                                      bad_input=WorkflowDefinitionError))


def list_workflow_triggers(workflow_name: str, namespace: str | None = None, *,
                           config: Config | None = None) -> list[TriggerInfo]:
    return [_trigger(d) for d in _api(config).call("GET", _wf_path(config, namespace, workflow_name) + "/triggers")]


def get_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> TriggerInfo:
    return _trigger(_api(config).call("GET", f"/triggers/{int(trigger_id)}"))


def pause_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> TriggerInfo:
    return _trigger(_api(config).call("POST", f"/triggers/{int(trigger_id)}/pause"))


def resume_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> TriggerInfo:
    return _trigger(_api(config).call("POST", f"/triggers/{int(trigger_id)}/resume"))


def delete_workflow_trigger(trigger_id: int, *, config: Config | None = None) -> None:
    _api(config).call("DELETE", f"/triggers/{int(trigger_id)}")


def add_workflow_schedule(expression: str, workflow_name: str, namespace: str | None = None, *,
                          config: Config | None = None) -> ScheduleInfo:
    return _schedule(_api(config).call("POST", _wf_path(config, namespace, workflow_name) + "/schedules",
                                       body={"expression": expression}, bad_input=WorkflowDefinitionError))


def list_workflow_schedules(workflow_name: str, namespace: str | None = None, *,
                            config: Config | None = None) -> list[ScheduleInfo]:
    return [_schedule(d) for d in _api(config).call("GET", _wf_path(config, namespace, workflow_name) + "/schedules")]


def get_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> ScheduleInfo:
    return _schedule(_api(config).call("GET", f"/schedules/{int(schedule_id)}"))


def pause_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> ScheduleInfo:
    return _schedule(_api(config).call("POST", f"/schedules/{int(schedule_id)}/pause"))


def resume_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> ScheduleInfo:
    return _schedule(_api(config).call("POST", f"/schedules/{int(schedule_id)}/resume"))


def delete_workflow_schedule(schedule_id: int, *, config: Config | None = None) -> None:
    _api(config).call("DELETE", f"/schedules/{int(schedule_id)}")
