"""Uploading and inspecting workflows with the CLI, as separate processes against the session broker."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.test_cli_events import fresh_env, run


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    environ = fresh_env(tmp_path / "home", AIFLOW_KAFKA_BOOTSTRAP=kafka_bootstrap,
                        AIFLOW_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}")
    run(environ, "topics", "create")
    return environ


def test_the_tutorial_uploads_as_written(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "tutorial"
    (folder / "dataset").mkdir(parents=True)
    shutil.copy(REPO / "samples" / "online_machine_learning" / "online_ml_workflow.py", folder)
    (folder / "dataset" / "mnist_train.npz").write_bytes(b"placeholder")

    done = run(env, "workflow", "upload", str(folder / "online_ml_workflow.py"), "--files", str(folder / "dataset"))
    assert done.stdout.strip() == "Workflow: default.online_machine_learning, submitted."

    shown = json.loads(run(env, "workflow", "show", "online_machine_learning", "-o", "json").stdout)
    assert [t["name"] for t in shown["tasks"]] == ["pre_processing", "training", "validating", "deploying",
                                                   "predicting"]
    assert {task: [r["action"] for r in rules] for task, rules in shown["rules"].items()} == \
        {"training": ["START"], "validating": ["START"], "deploying": ["START"]}
    table = run(env, "workflow", "show", "online_machine_learning").stdout
    assert "START when training is SUCCESS" in table and "START when event data_prepared" in table
    listed = json.loads(run(env, "workflow", "list", "-o", "json").stdout)
    assert [w["name"] for w in listed] == ["online_machine_learning"]
    snaps = json.loads(run(env, "workflow-snapshot", "list", "online_machine_learning", "-o", "json").stdout)
    assert [s["version"] for s in snaps] == [1]


def test_a_broken_file_is_refused_with_its_line_and_no_traceback(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n    Operator('a')\n"
                   "    Operator('a')\n")
    done = run(env, "workflow", "upload", str(bad), check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: {bad}:4: workflow 'w' already has a task named 'a'"
    assert json.loads(run(env, "workflow", "list", "-o", "json").stdout) == []


def test_namespace_and_workflow_lifecycle(env: dict[str, str], tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n    Operator('a')\n")
    assert run(env, "namespace", "add", "team", "-p", "owner=ml").stdout.strip() == "Namespace: team, added."
    assert run(env, "workflow", "upload", str(flow), "-n", "team").stdout.strip() == "Workflow: team.w, submitted."
    assert run(env, "workflow", "disable", "w", "-n", "team").stdout.strip() == "Workflow: team.w, disabled."
    assert json.loads(run(env, "workflow", "show", "w", "-n", "team", "-o", "json").stdout)["is_enabled"] is False
    refused = run(env, "namespace", "delete", "team", check=False)
    assert refused.returncode == 1 and "still has 1 workflow" in refused.stderr
    assert run(env, "workflow", "delete", "w", "-n", "team", "-y").stdout.strip() == "Workflow: team.w, deleted."
    assert run(env, "namespace", "delete", "team").stdout.strip() == "Namespace: team, deleted."
    names = [n["name"] for n in json.loads(run(env, "namespace", "list", "-o", "json").stdout)]
    assert names == ["default"]
    missing = run(env, "workflow", "show", "nope", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_db_commands(env: dict[str, str]) -> None:
    assert "revision 0002" in run(env, "db", "init").stdout
    run(env, "namespace", "add", "gone")
    assert run(env, "db", "reset", "-y").stdout.strip() == "Database reset."
    assert [n["name"] for n in json.loads(run(env, "namespace", "list", "-o", "json").stdout)] == ["default"]
    assert "base (empty)" in run(env, "db", "downgrade", "base").stdout
    assert "revision 0002" in run(env, "db", "upgrade").stdout
