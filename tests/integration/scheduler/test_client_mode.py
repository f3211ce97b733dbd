"""Client mode: `aiflow.ops` and the CLI through a running web server, on a machine whose configuration names
a database that does not exist and a Kafka that does not answer: everything goes over HTTP or fails."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiflow import ops
from aiflow.cli.main import cli
from aiflow.config import Config
from aiflow.errors import AIFlowError, ConfigError, Conflict, NotFound, WorkflowDefinitionError, WorkflowFileError
from aiflow.sdk.conditions import SingleEventCondition, WorkflowRule
from aiflow.web.server import WebServer
from tests.conftest import free_port
from tests.integration.scheduler.conftest import System

CHAIN = """
from aiflow import Workflow, BashOperator

with Workflow(name="chain"):
    first = BashOperator(name="first", bash_command="echo one")
    second = BashOperator(name="second", bash_command="echo two")
    second.start_after(first)
"""

BROKEN = """
from aiflow import Workflow
this line is not Python
"""


def serve(config: Config) -> Iterator[str]:
    """A web server of `config` on a free loopback port, in this process, while the generator is open."""
    server = WebServer(config, "127.0.0.1", free_port())
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    assert server.listening.wait(30), "the web server did not start listening"
    yield server.url
    stop.set()
    thread.join(timeout=30)


@pytest.fixture
def url(system: System) -> Iterator[str]:
    yield from serve(system.config)


def client_env(url: str, tmp: Path) -> dict[str, str]:
    """A client's environment: the API's URL, and a database and a Kafka it could not use if it tried."""
    return {"AIFLOW_HOME": str(tmp / "client"), "AIFLOW_API_URL": url,
            "AIFLOW_DB_URI": f"sqlite:///{tmp}/no-such-folder/aiflow.db", "AIFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1"}


def client(url: str, tmp: Path, **env: str) -> Config:
    environ = {**client_env(url, tmp), **env}
    return Config.load(home=environ["AIFLOW_HOME"], environ=environ)


def test_ops_go_through_the_api_and_never_touch_a_database(system: System, url: str) -> None:
    config = client(url, system.tmp)
    flow = system.tmp / "upload" / "flow.py"
    flow.parent.mkdir()
    flow.write_text(CHAIN)
    (flow.parent / "data.txt").write_text("42")

    [uploaded] = ops.upload_workflows(flow, [flow.parent / "data.txt"], config=config)
    assert (uploaded.namespace, uploaded.name, uploaded.version, uploaded.is_enabled) == ("default", "chain", 1, True)
    assert [w.name for w in ops.list_workflows(config=config)] == ["chain"]
    shown = ops.get_workflow("chain", config=config)
    assert shown is not None and sorted(t["name"] for t in shown.definition["tasks"]) == ["first", "second"]
    assert shown.create_time.tzinfo is not None
    assert [s.version for s in ops.list_workflow_snapshots("chain", config=config)] == [1]
    assert ops.get_workflow_snapshot("chain", 1, config=config).definition["name"] == "chain"
    assert [n.name for n in ops.list_namespaces(config=config)] == ["default"]

    execution_id = ops.start_workflow_execution("chain", config=config)  # waits by polling the API
    system.wait_for(lambda: (e := ops.get_workflow_execution(execution_id, config=config)) is not None
                    and e.status == "SUCCESS", what="the execution to succeed")
    [listed] = ops.list_workflow_executions("chain", status="success", config=config)
    assert listed.id == execution_id and listed.end_date is not None and listed.end_date.tzinfo is not None
    tries = ops.list_task_executions(execution_id, config=config)
    assert sorted((t.task, t.status) for t in tries) == [("first", "SUCCESS"), ("second", "SUCCESS")]
    assert ops.get_task_execution(execution_id, "second", config=config).try_number == 1
    assert ops.list_workflow_executions("chain", limit=1, offset=1, config=config) == []

    schedule = ops.add_workflow_schedule("interval@1 0 0 0", "chain", config=config)
    assert ops.pause_workflow_schedule(schedule.id, config=config).is_paused is True
    assert ops.resume_workflow_schedule(schedule.id, config=config).is_paused is False
    assert ops.get_workflow_schedule(schedule.id, config=config).expression == "interval@1 0 0 0"
    ops.delete_workflow_schedule(schedule.id, config=config)
    assert ops.list_workflow_schedules("chain", config=config) == []
    trigger = ops.add_workflow_trigger(WorkflowRule(SingleEventCondition("go")), "chain", config=config)
    assert ops.pause_workflow_trigger(trigger.id, config=config).is_paused is True
    assert [t.condition["key"] for t in ops.list_workflow_triggers("chain", config=config)] == ["go"]
    ops.delete_workflow_trigger(trigger.id, config=config)

    # What the server refuses is raised as ops raises it locally.
    assert ops.get_workflow("nope", config=config) is None
    assert ops.get_workflow_execution("0123456789ab", config=config) is None
    with pytest.raises(NotFound, match="nope"):
        ops.list_workflow_executions("nope", config=config)
    with pytest.raises(WorkflowDefinitionError, match="cron@"):
        ops.add_workflow_schedule("every day", "chain", config=config)
    ops.disable_workflow("chain", config=config)
    with pytest.raises(Conflict, match="disabled"):
        ops.start_workflow_execution("chain", config=config)
    ops.enable_workflow("chain", config=config)
    broken = system.tmp / "upload" / "broken.py"
    broken.write_text(BROKEN)
    with pytest.raises(WorkflowFileError, match=r"broken\.py.*3"):
        ops.upload_workflows(broken, config=config)
    with pytest.raises(AIFlowError, match="not available through the API yet: task_log_path"):
        ops.task_log_path(execution_id, "first", config=config)

    assert not (system.tmp / "no-such-folder").exists()  # the client's database was never opened


def test_namespaces_snapshots_and_executions_are_updated_and_deleted_over_http(system: System, url: str) -> None:
    config = client(url, system.tmp)
    assert ops.add_namespace("team", {"owner": "a"}, config=config).properties == {"owner": "a"}
    assert ops.update_namespace("team", {"owner": "b"}, config=config).properties == {"owner": "b"}
    found = ops.get_namespace("team", config=config)
    assert found is not None and found.properties == {"owner": "b"}
    flow = system.tmp / "flow.py"
    for text in (CHAIN, CHAIN + "# changed\n"):
        flow.write_text(text)
        ops.upload_workflows(flow, namespace="team", config=config)
    assert [s.version for s in ops.list_workflow_snapshots("chain", "team", config=config)] == [2, 1]
    with pytest.raises(Conflict, match="latest"):
        ops.delete_workflow_snapshot("chain", 2, "team", config=config)
    ops.delete_workflow_snapshot("chain", 1, "team", config=config)
    assert [s.version for s in ops.list_workflow_snapshots("chain", "team", config=config)] == [2]

    execution_id = ops.start_workflow_execution("chain", "team", config=config)
    system.wait_for(lambda: (e := ops.get_workflow_execution(execution_id, config=config)) is not None
                    and e.status == "SUCCESS", what="the execution to succeed")
    ops.delete_workflow_execution(execution_id, config=config)
    assert ops.get_workflow_execution(execution_id, config=config) is None
    with pytest.raises(Conflict, match="still has 1 workflow"):
        ops.delete_namespace("team", config=config)
    ops.delete_workflow("chain", "team", config=config)
    ops.delete_namespace("team", config=config)
    assert ops.get_namespace("team", config=config) is None
    assert not (system.tmp / "no-such-folder").exists()


def test_the_cli_lists_workflows_and_executions_over_http(system: System, url: str) -> None:
    system.upload(CHAIN)
    env = client_env(url, system.tmp)
    started = CliRunner().invoke(cli, ["workflow-execution", "start", "chain"], env=env)
    assert started.exit_code == 0, started.output
    assert "submitted" in started.output and "no scheduler" not in started.output  # Kafka is not asked here
    listed = CliRunner().invoke(cli, ["workflow", "list"], env=env)
    assert listed.exit_code == 0 and "chain" in listed.output, listed.output
    # `start` returns once the command is sent; the execution is listed once the scheduler has taken it.
    system.wait_for(lambda: started.output.split()[2] in CliRunner().invoke(
        cli, ["workflow-execution", "list", "chain", "-o", "json"], env=env).output, what="the execution listed")
    executions = CliRunner().invoke(cli, ["workflow-execution", "list", "chain", "-o", "json"], env=env)
    assert executions.exit_code == 0 and started.output.split()[2] in executions.output, executions.output
    missing = CliRunner().invoke(cli, ["workflow-execution", "list", "nope"], env=env)
    assert missing.exit_code != 0 and "nope" in missing.output and "Traceback" not in missing.output
    assert not (system.tmp / "no-such-folder").exists()


def test_a_token_protected_server_wants_the_clients_token(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = system.tmp / "server-token"
    secret.write_text("s3cr3t\n")
    protected = system.config.with_overrides(**{"webserver.token_file": str(secret)})
    monkeypatch.delenv("AIFLOW_API_TOKEN", raising=False)
    for url in serve(protected):
        with pytest.raises(ConfigError, match="requires a token"):
            ops.list_namespaces(config=client(url, system.tmp))
        monkeypatch.setenv("AIFLOW_API_TOKEN", "wrong")
        with pytest.raises(ConfigError, match="refused the token"):
            ops.list_namespaces(config=client(url, system.tmp))
        monkeypatch.setenv("AIFLOW_API_TOKEN", "s3cr3t")
        assert [n.name for n in ops.list_namespaces(config=client(url, system.tmp))] == ["default"]
        monkeypatch.delenv("AIFLOW_API_TOKEN")
        by_file = client(url, system.tmp, AIFLOW_API_TOKEN_FILE=str(secret))
        assert [n.name for n in ops.list_namespaces(config=by_file)] == ["default"]


def test_a_server_that_does_not_answer_is_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(AIFlowError, match=f"cannot reach the aiflow API at {url}"):
        ops.list_workflows(config=client(url, tmp_path))
