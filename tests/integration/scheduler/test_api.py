"""The REST API (/api/v1) against a running aiflow: the real store, the real broker, real services."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from aiflow import ops
from aiflow.cli.main import cli
from aiflow.web.api import create_app
from tests.integration.scheduler.conftest import System

CHAIN = """
from aiflow import Workflow, BashOperator

with Workflow(name="chain"):
    first = BashOperator(name="first", bash_command="echo one")
    second = BashOperator(name="second", bash_command="echo two")
    second.start_after(first)
"""


@pytest.fixture
def api(system: System) -> Iterator[TestClient]:
    with TestClient(create_app(system.config), base_url="http://127.0.0.1") as client:
        yield client


def wait_json(client: TestClient, path: str, check: object, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if check(body):  # type: ignore[operator]
            return body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, body
        time.sleep(0.3)


def test_workflows_executions_tasks_and_events_over_http(system: System, api: TestClient) -> None:
    system.upload(CHAIN)
    assert [n["name"] for n in api.get("/api/v1/namespaces").json()] == ["default"]
    assert [w["name"] for w in api.get("/api/v1/namespaces/default/workflows").json()] == ["chain"]
    workflow = api.get("/api/v1/namespaces/default/workflows/chain").json()
    assert workflow["version"] == 1 and workflow["is_enabled"] is True
    assert sorted(t["name"] for t in workflow["tasks"]) == ["first", "second"]
    assert [s["version"] for s in api.get("/api/v1/namespaces/default/workflows/chain/snapshots").json()] == [1]

    started = api.post("/api/v1/namespaces/default/workflows/chain/executions")
    assert started.status_code == 201
    execution_id = started.json()["id"]
    done = wait_json(api, f"/api/v1/executions/{execution_id}", lambda b: b.get("status") == "SUCCESS")
    assert sorted((t["task"], t["status"]) for t in done["tasks"]) == [("first", "SUCCESS"), ("second", "SUCCESS")]
    listed = api.get("/api/v1/namespaces/default/workflows/chain/executions", params={"status": "success"}).json()
    assert [e["id"] for e in listed] == [execution_id]
    assert api.get("/api/v1/namespaces/default/workflows/chain/executions",
                   params={"status": "FAILED"}).json() == []

    restarted = api.post(f"/api/v1/executions/{execution_id}/tasks/first/restart")
    assert restarted.status_code == 202  # accepted: the execution has ended, so the scheduler ignores it

    schedule = api.post("/api/v1/namespaces/default/workflows/chain/schedules", json={"expression": "interval@1 0 0 0"})
    assert schedule.status_code == 201
    schedule_id = schedule.json()["id"]
    assert api.post(f"/api/v1/schedules/{schedule_id}/pause").json()["is_paused"] is True
    assert api.post(f"/api/v1/schedules/{schedule_id}/resume").json()["is_paused"] is False
    assert api.delete(f"/api/v1/schedules/{schedule_id}").status_code == 204
    assert api.get("/api/v1/namespaces/default/workflows/chain/schedules").json() == []

    sent = api.post("/api/v1/events", json={"key": "api_probe", "value": "42"})
    assert sent.status_code == 201 and sent.json()["offset"] is not None
    found = api.get("/api/v1/namespaces/default/events", params={"key": "api_probe"}).json()
    assert [(e["key"], e["value"]) for e in found] == [("api_probe", "42")]
    naive = api.get("/api/v1/namespaces/default/events", params={"key": "api_probe", "until": "2999-01-01T00:00:00"})
    assert naive.status_code == 200 and len(naive.json()) == 1  # a time without a zone is UTC
    assert isinstance(api.get("/api/v1/dead-letters").json(), list)

    assert api.post("/api/v1/namespaces/default/workflows/chain/disable").json()["is_enabled"] is False
    refused = api.post("/api/v1/namespaces/default/workflows/chain/executions")
    assert refused.status_code == 409 and "disabled" in refused.json()["detail"]
    assert api.get("/healthz").json() == {"status": "ok"} and api.get("/readyz").status_code == 200


def test_bad_input_is_a_400_with_the_reason_and_missing_things_a_404(system: System, api: TestClient) -> None:
    system.upload(CHAIN)
    missing = api.get("/api/v1/namespaces/default/workflows/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert api.get("/api/v1/executions/0123456789ab").status_code == 404
    bad = api.post("/api/v1/namespaces/default/workflows/chain/schedules", json={"expression": "every day"})
    assert bad.status_code == 400 and "cron@" in bad.json()["detail"]
    no_key = api.post("/api/v1/events", json={"value": "x"})
    assert no_key.status_code == 400 and "key" in no_key.json()["detail"]
    bad_name = api.post("/api/v1/namespaces", json={"name": "no spaces allowed"})
    assert bad_name.status_code == 400 and "invalid" in bad_name.json()["detail"]
    assert api.post("/api/v1/executions/0123456789ab/tasks/first/jump").status_code in (400, 404)
    assert api.get("/api/v1/namespaces/default/workflows/chain/executions", params={"limit": 0}).status_code == 400


def test_a_token_guards_every_api_route_but_not_the_probes(system: System) -> None:
    with TestClient(create_app(system.config, token="s3cr3t"), base_url="http://127.0.0.1") as client:
        assert client.get("/api/v1/namespaces").status_code == 401
        assert client.get("/api/v1/namespaces", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/v1/namespaces", headers={"Authorization": "Bearer é".encode()}).status_code == 401
        assert client.get("/api/v1/namespaces", headers={"Authorization": "Bearer s3cr3t"}).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_the_webserver_refuses_to_listen_off_loopback_without_a_token(system: System) -> None:
    result = CliRunner().invoke(cli, ["webserver", "start", "--host", "0.0.0.0", "--port", "0"],
                                env={"AIFLOW_HOME": str(system.config.home), "AIFLOW_WEBSERVER_TOKEN": ""})
    assert result.exit_code == 1
    assert "set a token" in result.output and "Traceback" not in result.output
    assert ops.list_namespaces(config=system.config)  # nothing else happened to the store


READS = """
from aiflow import Workflow, BashOperator

with Workflow(name="reads"):
    BashOperator(name="read", bash_command="grep -q 'hello from the api' data.txt")
"""


def test_a_workflow_file_and_its_artifacts_upload_over_http_and_run(system: System, api: TestClient) -> None:
    uploaded = api.post("/api/v1/namespaces/default/workflows",
                        files=[("file", ("reads.py", READS.encode(), "text/x-python")),
                               ("files", ("data.txt", b"hello from the api\n", "text/plain"))])
    assert uploaded.status_code == 201, uploaded.text
    assert [(w["name"], w["version"]) for w in uploaded.json()] == [("reads", 1)]
    execution_id = api.post("/api/v1/namespaces/default/workflows/reads/executions").json()["id"]
    wait_json(api, f"/api/v1/executions/{execution_id}", lambda b: b.get("status") == "SUCCESS")

    broken = api.post("/api/v1/namespaces/default/workflows",
                      files=[("file", ("broken.py", b"x = 1\nraise RuntimeError('nope')\n", "text/x-python"))])
    assert broken.status_code == 400 and "broken.py:2" in broken.json()["detail"]
    not_python = api.post("/api/v1/namespaces/default/workflows", files=[("file", ("../evil.sh", b"", "text/plain"))])
    assert not_python.status_code == 400 and ".py" in not_python.json()["detail"]
    assert api.post("/api/v1/namespaces/default/workflows").status_code == 400  # no file at all


def test_another_site_cannot_drive_an_open_server(system: System, api: TestClient) -> None:
    system.upload(CHAIN)
    path = "/api/v1/namespaces/default/workflows/chain/disable"
    assert api.post(path, headers={"Origin": "http://evil.example"}).status_code == 403
    assert api.post(path, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert ops.get_workflow("chain", config=system.config).is_enabled  # type: ignore[union-attr]
    # A name another site re-pointed at 127.0.0.1 (DNS rebinding) is not answered at all.
    assert api.get("/api/v1/namespaces", headers={"Host": "evil.example"}).status_code == 400
    assert api.post(path, headers={"Origin": "http://127.0.0.1"}).status_code == 200  # its own pages may
