"""A try's log page stream (no broker: the store is SQLite, the log a file)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from fastapi.testclient import TestClient

from aiflow.config import Config
from aiflow.store.db import Store
from aiflow.store.models import ExecutionRow, TaskExecutionRow, WorkflowRow
from aiflow.web.api import create_app


def _store_with_a_finished_try(config: Config) -> Path:
    store = Store(config)
    store.ensure_schema()
    now = datetime.now(timezone.utc)
    with store.session() as s:
        workflow = WorkflowRow(namespace="default", name="w", is_enabled=True, latest_version=1,
                               workflow_file="w/w.py", definition="{}", create_time=now, update_time=now)
        s.add(workflow)
        s.flush()
        s.add(ExecutionRow(id="e1", workflow_id=workflow.id, snapshot_version=1, status="SUCCESS", run_type="MANUAL",
                           begin_date=now, end_date=now, cause="test", message=""))
        s.add(TaskExecutionRow(id="e1/t/1", execution_id="e1", task_name="t", try_number=1, status="SUCCESS",
                               begin_date=now, end_date=now, message="", cause="execution started", worker="w1"))
    log = config.home / "logs" / "w" / "e1" / "t" / "1.log"
    log.parent.mkdir(parents=True)
    log.write_text("first line\nsecond line\n")
    return log


def _texts(body: str) -> list[str]:
    return [json.loads(line[len("data: "):])["text"] for line in body.splitlines()
            if line.startswith("data: ") and '"text"' in line]


def test_a_reconnecting_log_stream_goes_on_from_the_last_position_it_was_sent(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={})
    _store_with_a_finished_try(config)
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        path = "/executions/e1/tasks/t/tries/1/log/stream"
        whole = client.get(path)
        assert whole.status_code == 200 and "".join(_texts(whole.text)) == "first line\nsecond line\n"
        assert "id: 23" in whole.text  # the position after the chunk
        again = client.get(path, headers={"Last-Event-ID": "11"})  # the browser had the first line
        assert "".join(_texts(again.text)) == "second line\n"
