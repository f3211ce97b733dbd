"""What a CLI call loads and waits for: a command imports its own module only, a command that reads a SQLite
store loads neither SQLAlchemy nor the Kafka client nor the web server, and `workflow-execution start` returns
once the command is sent instead of waiting for the scheduler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner

from aiflow.cli.main import COMMANDS, cli

# Runs the CLI in a fresh interpreter, then prints the modules it had loaded (as JSON, on the last line).
PROBE = """
import json, sys
from aiflow.cli.main import cli
try:
    cli.main(sys.argv[1:], prog_name="aiflow")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""
HEAVY = ("sqlalchemy", "confluent_kafka", "alembic", "fastapi", "uvicorn", "fastavro", "httpx", "croniter",
         "aiflow.sdk", "aiflow.ops", "aiflow.store", "aiflow.kafka")


def loaded_by(args: list[str], home: Path) -> set[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}, "AIFLOW_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_version_loads_no_command_module_nor_the_store_nor_kafka(tmp_path: Path) -> None:
    modules = loaded_by(["--version"], tmp_path)
    assert {m for m in modules if m.startswith(HEAVY)} == set()
    assert {m for m in modules if m.startswith("aiflow.cli.") and m.endswith("_cmd")} == set()


@pytest.mark.parametrize("args", [["workflow-execution", "list", "nothing"], ["task-execution", "list", "e1"],
                                  ["workflow-execution", "show", "e1"], ["task-execution", "show", "e1", "t"]])
def test_reading_a_sqlite_store_loads_neither_sqlalchemy_nor_kafka_nor_other_commands(tmp_path: Path,
                                                                                      args: list[str]) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}, "AIFLOW_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "aiflow.cli", "db", "init"], env=env, check=True, capture_output=True,
                   timeout=60)
    modules = loaded_by(args, tmp_path)
    assert "aiflow.store.reads" in modules and "aiflow.cli.execution_cmd" in modules  # it did read the store
    assert {m for m in modules if m.startswith(("sqlalchemy", "confluent_kafka", "alembic", "fastapi", "fastavro",
                                                "httpx", "croniter", "aiflow.kafka", "aiflow.web", "aiflow.sdk"))} \
        == set()
    assert {m for m in modules if m.startswith("aiflow.cli.") and m.endswith("_cmd")} == {"aiflow.cli.execution_cmd"}


def test_every_command_is_found_by_name_and_help_lists_them_all() -> None:
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
    assert set(cli.list_commands(ctx)) == {*COMMANDS, "version"}
    shown = CliRunner().invoke(cli, ["--help"]).output
    assert all(f"  {name} " in shown for name in COMMANDS), shown


class FakeOps:
    """The ops functions `start` calls, recording the waits for the store (where the execution never shows)."""

    def __init__(self, scheduler: bool | None) -> None:
        self.scheduler = scheduler
        self.waited: list[str] = []

    def start_workflow_execution(self, workflow: str, namespace: str | None, *, config: Any, wait: float) -> str:
        assert wait == 0
        return "e1"

    def scheduler_running(self, *, config: Any) -> bool | None:
        return self.scheduler

    def prepare_to_send(self, *, config: Any, ask_schedulers: bool = False) -> None:
        pass

    def wait_for_execution(self, execution_id: str, timeout: float, *, config: Any) -> bool:
        self.waited.append(execution_id)
        return False

    def get_workflow_execution(self, execution_id: str, *, config: Any) -> None:
        return None


@pytest.fixture
def fake_ops(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeOps:
    from aiflow import ops

    fake = FakeOps(scheduler=True)
    for name in ("start_workflow_execution", "scheduler_running", "wait_for_execution", "get_workflow_execution",
                 "prepare_to_send"):
        monkeypatch.setattr(ops, name, getattr(fake, name))
    monkeypatch.setenv("AIFLOW_HOME", str(tmp_path))
    return fake


def test_start_returns_once_sent_without_waiting_for_the_store(fake_ops: FakeOps) -> None:
    done = CliRunner().invoke(cli, ["workflow-execution", "start", "w"])
    assert done.exit_code == 0 and done.stdout == "Workflow execution: e1 submitted.\n" and done.stderr == ""
    assert fake_ops.waited == []


@pytest.mark.parametrize("scheduler", [False, None])
def test_start_says_so_only_when_no_scheduler_runs(fake_ops: FakeOps, scheduler: bool | None) -> None:
    fake_ops.scheduler = scheduler  # None: cannot be told (client mode, Kafka silent): nothing said
    done = CliRunner().invoke(cli, ["workflow-execution", "start", "w"])
    assert done.exit_code == 0 and done.stdout == "Workflow execution: e1 submitted.\n"
    assert ("no scheduler is running" in done.stderr) is (scheduler is False)


def test_start_as_json_waits_for_the_stored_execution(fake_ops: FakeOps) -> None:
    done = CliRunner().invoke(cli, ["workflow-execution", "start", "w", "-o", "json"])
    assert done.exit_code == 0 and json.loads(done.stdout) == {"id": "e1", "workflow": "w", "status": None}
    assert fake_ops.waited == ["e1"] and "no scheduler has taken it yet" in done.stderr


class FakeEventClient:
    """`event send`'s client: sends nothing, returns the event as stored."""

    def __init__(self, config: Any, namespace: str | None, sender: str) -> None:
        pass

    def __enter__(self) -> FakeEventClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def send_event(self, key: str, value: str | None) -> Any:
        return SimpleNamespace(key=key, namespace="default", partition=0, offset=0, to_dict=lambda: {"key": key})


# Every command that ends at once once it has sent (aiflow.cli.common.end_at_once), with the ops it calls faked.
ENDING_AT_ONCE = [
    ["workflow-execution", "start", "w"], ["workflow-execution", "start", "w", "-o", "json"],
    ["workflow-execution", "stop", "e1"], ["workflow-execution", "stop-all", "w"],
    ["task-execution", "start", "e1", "t"], ["task-execution", "stop", "e1", "t"],
    ["task-execution", "restart", "e1", "t"], ["workflow", "upload", "flow.py"], ["event", "send", "k", "v"],
]


@pytest.mark.parametrize("args", ENDING_AT_ONCE, ids=" ".join)
def test_commands_that_send_ask_to_end_at_once_and_reading_ones_do_not(
        fake_ops: FakeOps, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str]) -> None:
    from aiflow import events, ops
    from aiflow.cli import common

    for name in ("stop_workflow_execution", "start_task_execution", "stop_task_execution",
                 "restart_task_execution"):
        monkeypatch.setattr(ops, name, lambda *a, **k: None)
    monkeypatch.setattr(ops, "stop_workflow_executions", lambda *a, **k: [])
    monkeypatch.setattr(ops, "upload_workflows", lambda *a, **k: [])
    monkeypatch.setattr(ops, "list_workflow_executions", lambda *a, **k: [])
    monkeypatch.setattr(events, "EventClient", FakeEventClient)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flow.py").write_text("")
    monkeypatch.setattr(common, "_end_at_once", False)
    for reading in (["--help"], ["workflow-execution", "list", "w"]):
        done = CliRunner().invoke(cli, reading)
        assert done.exit_code == 0 and not common.ends_at_once(), done.output
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0 and common.ends_at_once(), done.output


# Ends by aiflow.cli.main.end_now after 100 KB on a pipe; an atexit line shows whether the interpreter's teardown ran.
ENDING = """
import atexit, sys, threading, time
from aiflow.cli.main import end_now
atexit.register(print, "teardown")
if sys.argv[2] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread done"))).start()
sys.stdout.write("x" * 100_000 + "\\n")
end_now(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])
"""


@pytest.mark.parametrize(("code", "thread", "status"), [("0", "none", 0), ("3", "none", 3), ("bad thing", "none", 1),
                                                        ("0", "thread", 0)])
def test_ending_at_once_flushes_the_output_and_skips_the_teardown_unless_a_thread_runs(code: str, thread: str,
                                                                                     status: int) -> None:
    done = subprocess.run([sys.executable, "-c", ENDING, code, thread], capture_output=True, text=True, timeout=60)
    assert done.returncode == status, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "x" * 100_000  # all of it, though stdout was a pipe (block-buffered)
    # A thread that is not a daemon gets the interpreter's normal exit, which waits for it.
    assert lines[1:] == (["thread done", "teardown"] if thread == "thread" else [])
    assert done.stderr == ("bad thing\n" if code == "bad thing" else "")


def test_an_upload_starts_loading_the_file_before_it_imports_the_store_or_kafka() -> None:
    probe = "import json, sys\nimport aiflow.ops.uploads\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(done.stdout))
    assert {m for m in modules if m.startswith(("sqlalchemy", "confluent_kafka", "aiflow.store", "aiflow.kafka"))} \
        == set()


def test_a_workflow_file_importing_ai_flow_ops_loads_neither_the_store_nor_kafka() -> None:
    # The tutorial's file does `from ai_flow import ops`: its load at upload, in the scheduler and in
    # every try would otherwise import SQLAlchemy and the store's modules for names it may never call.
    probe = "import json, sys\nfrom ai_flow import ops\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(done.stdout))
    assert {m for m in modules if m.startswith(("sqlalchemy", "confluent_kafka", "aiflow.store", "aiflow.ops."))} \
        == set()
    from ai_flow import ops  # and every name is still there, found on first use

    assert ops.list_namespace is ops.list_namespaces and callable(ops.start_workflow_execution)
    assert set(dir(ops)) >= set(ops.__all__)


def test_a_workflow_file_importing_the_notification_client_loads_no_kafka_client() -> None:
    # The tutorial's file imports it; its load at upload sends no event, so it need not import confluent-kafka.
    probe = ("import json, sys\nfrom ai_flow.notification.notification_client import AIFlowNotificationClient\n"
             "from aiflow import EventClient\nprint(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(done.stdout))
    assert {m for m in modules if m.startswith(("confluent_kafka", "aiflow.kafka"))} == set()


def test_a_workflow_file_loads_croniter_only_for_a_cron_schedule(tmp_path: Path) -> None:
    # croniter's import runs `file` on the interpreter (platform.architecture): about 25 ms that the upload's
    # load of every workflow file paid, and the CLI's upload command before it could start that load.
    probe = ("import json, sys\nfrom aiflow.sdk.loader import load_workflows\nimport aiflow.ops.uploads\n"
             "before = 'croniter' in sys.modules\nload_workflows(sys.argv[1])\n"
             "print(json.dumps([before, 'croniter' in sys.modules]))")
    plain = tmp_path / "plain.py"
    plain.write_text("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n    Operator(name='t')\n")
    scheduled = tmp_path / "scheduled.py"
    scheduled.write_text("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n"
                         "    Operator(name='t', periodic_expression='cron@*/5 * * * *')\n")
    for path, loads_it in ((plain, False), (scheduled, True)):
        done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, loads_it]
