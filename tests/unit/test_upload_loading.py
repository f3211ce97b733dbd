"""Loading a workflow file for an upload, in a process of its own while the uploading process gets ready: what it
returns, how it gives up, and which error an upload with several mistakes reports. No broker: every case here
ends before anything is published."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aiflow import ops
from aiflow.config import Config
from aiflow.errors import WorkflowFileError
from aiflow.ops.uploads import WorkflowLoading


def config_of(home: Path, **env: str) -> Config:
    # A Kafka address nothing answers at: none of these cases may need it.
    return Config.load(home=home, environ={"AIFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:9", **env})


def test_a_file_that_loads_is_described(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n    Operator('a')\n")
    [described] = ops.inspect_workflow_file(flow, "team", config_of(tmp_path / "home"))
    assert described["name"] == "w" and described["namespace"] == "team"


def test_a_file_that_hangs_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    # A child that outlives the loader and keeps its output open, then a loader that waits.
    flow.write_text("import subprocess, time\nsubprocess.Popen(['sleep', '60'])\ntime.sleep(60)\n")
    began = time.monotonic()
    loading = WorkflowLoading(flow, "default", config_of(tmp_path / "home", AIFLOW_WORKFLOWS_LOAD_TIMEOUT="1"))
    with pytest.raises(WorkflowFileError, match="timed out after 1 s"):
        loading.result()
    assert time.monotonic() - began < 10 and loading.process.returncode is not None
    loading.cancel()  # once over, a no-op


def test_an_upload_reports_the_files_own_error_before_a_missing_artifact(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("x = 1\nraise ValueError('broken at import')\n")
    with pytest.raises(WorkflowFileError, match="broken at import"):
        ops.upload_workflows(flow, [tmp_path / "missing"], config=config_of(tmp_path / "home"))
    good = tmp_path / "good.py"
    good.write_text("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n    Operator('a')\n")
    with pytest.raises(WorkflowFileError, match="missing: no such file or folder"):
        ops.upload_workflows(good, [tmp_path / "missing"], config=config_of(tmp_path / "home"))
