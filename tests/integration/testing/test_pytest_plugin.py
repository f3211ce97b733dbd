"""The pytest plugin: registered by installing aiflow, and its `aiflow_stack` runs a user's
integration test against real services (here on the session's broker)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

USER_FLOW = """
from aiflow import BashOperator, TaskAction, Workflow

with Workflow(name="plugin_check"):
    BashOperator(name="first", bash_command="echo first")
    second = BashOperator(name="second", bash_command="echo second")
    second.action_on_event_received(TaskAction.START, "go")
"""

USER_TEST = """
from pathlib import Path


def test_my_workflow_on_real_services(aiflow_stack):
    aiflow_stack.upload(Path(__file__).with_name("flow.py"))
    execution_id = aiflow_stack.start_execution("plugin_check")
    aiflow_stack.wait_for_task(execution_id, "first", "SUCCESS")
    aiflow_stack.send_event("go")
    info = aiflow_stack.wait_for_execution(execution_id, "SUCCESS")
    assert info.workflow == "plugin_check"
    tries = {t.task: t for t in aiflow_stack.tries(execution_id)}
    assert tries["second"].cause.startswith("rule 1 of second (START) on event 'go'")


def test_the_stack_is_shared_by_the_session(aiflow_stack):
    assert aiflow_stack.bootstrap and (aiflow_stack.home / "run" / "standalone.pid").exists()
    Path(__file__).with_name("home.txt").write_text(str(aiflow_stack.home))
"""


def test_installing_aiflow_registers_the_plugin() -> None:
    found = {e.name: e.value for e in entry_points(group="pytest11")}
    assert found.get("aiflow") == "aiflow.testing.pytest_plugin"


def test_aiflow_stack_runs_a_users_integration_test(kafka_bootstrap: str, tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(USER_FLOW)
    (tmp_path / "test_user.py").write_text(USER_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIFLOW_", "PYTEST_"))}
    env["AIFLOW_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    home = Path((tmp_path / "home.txt").read_text())
    assert not (home / "run" / "standalone.pid").exists()  # stopped with the session
