"""Task output through the logs topic: shipped by the worker, read from any machine, batched."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from aiflow import ops
from aiflow.config import Config
from aiflow.kafka import topics
from aiflow.kafka.readers import TryLogReader
from aiflow.protocol.messages import InboxKind, InboxMessage
from aiflow.protocol.records import try_key
from aiflow.web.api import create_app
from tests.conftest import read_topic
from tests.integration.scheduler.conftest import System

TALK = """
import sys
from aiflow import Workflow, PythonOperator

def talk():
    for i in range(3000):
        print(f"line {i} é")
    print("to stderr", file=sys.stderr)

with Workflow(name="talk"):
    PythonOperator(name="talk", python_callable=talk)
"""


def wait_for_end_chunk(config: Config, execution_id: str, task: str, try_number: int = 1,
                       timeout: float = 30.0) -> None:
    """Until the try's last chunk is on the logs topic."""
    reader = TryLogReader(config, execution_id, task, try_number)
    deadline = time.monotonic() + timeout
    try:
        while not reader.ended:
            assert time.monotonic() < deadline, f"no end chunk of {execution_id}/{task} after {timeout:.0f} s"
            reader.read(0.5)
    finally:
        reader.close()


def local_log(system: System, workflow: str, execution_id: str, task: str, try_number: int = 1) -> Path:
    return system.config.home / "logs" / workflow / execution_id / task / f"{try_number}.log"


def test_a_tries_output_is_read_from_the_logs_topic_when_its_file_is_not_here(system: System) -> None:
    system.upload(TALK)
    execution_id = ops.start_workflow_execution("talk", config=system.config)
    system.wait_for(lambda: system.status(execution_id) == "SUCCESS", what="the execution to succeed")
    path = local_log(system, "talk", execution_id, "talk")
    expected = path.read_text()  # the runner's own lines around the task's
    assert "".join(f"line {i} é\n" for i in range(3000)) + "to stderr\n" in expected
    wait_for_end_chunk(system.config, execution_id, "talk")

    path.unlink()  # as on a machine that is not the worker's
    piece = ops.read_task_log(execution_id, "talk", config=system.config)
    assert piece.source == topics.name(system.config, topics.LOGS)
    assert piece.text == expected and piece.ended and piece.position == len(expected.encode())
    # From a position on (a browser that reconnects), and only the tail (the web page's first view).
    assert ops.read_task_log(execution_id, "talk", start=100, config=system.config).text == \
        expected.encode()[100:].decode()
    assert ops.read_task_log(execution_id, "talk", tail=30, config=system.config).text == \
        expected.encode()[-30:].decode()
    assert "".join(p.text for p in ops.follow_task_log(execution_id, "talk", config=system.config)) == expected

    # The web pages fall back to the topic too; stream positions are the file's, as with a local file.
    with TestClient(create_app(system.config), base_url="http://127.0.0.1") as client:
        page = client.get(f"/executions/{execution_id}/tasks/talk/tries/1/log")
        assert page.status_code == 200 and "line 2999 é" in page.text and piece.source in page.text
        stream = f"/executions/{execution_id}/tasks/talk/tries/1/log/stream"
        whole = client.get(stream)
        assert "".join(sse_texts(whole.text)) == expected and "event: end" in whole.text
        again = client.get(stream, headers={"Last-Event-ID": "100"})
        assert "".join(sse_texts(again.text)) == expected.encode()[100:].decode()


def sse_texts(body: str) -> list[str]:
    return [json.loads(line[len("data: "):])["text"] for line in body.splitlines()
            if line.startswith("data: ") and '"text"' in line]


CHATTY = """
import time
from aiflow import Workflow, PythonOperator

def chatty():
    for i in range(200_000):
        print(f"line {i}")
    time.sleep(3)  # heartbeats go on while the shipper catches up

with Workflow(name="chatty"):
    PythonOperator(name="chatty", python_callable=chatty)
"""


def test_a_chatty_task_is_shipped_in_few_records_and_does_not_hold_up_its_worker(system: System) -> None:
    system.upload(CHATTY)
    started = time.monotonic()
    execution_id = ops.start_workflow_execution("chatty", config=system.config)
    system.wait_for(lambda: system.status(execution_id) == "SUCCESS", timeout=120, what="the execution to succeed")
    took = time.monotonic() - started
    wait_for_end_chunk(system.config, execution_id, "chatty")
    local_log(system, "chatty", execution_id, "chatty").unlink()
    text = ops.read_task_log(execution_id, "chatty", config=system.config).text
    assert [line for line in text.splitlines() if line.startswith("line ")] == [f"line {i}" for i in range(200_000)]

    key = try_key(execution_id, "chatty", 1).encode()
    records = [m for m in read_topic(system.config, topics.LOGS) if m.key() == key]
    assert len(records) < 200, f"{len(records)} records for 200,000 lines: not batched"
    # The worker (heartbeat interval 1 s) kept its beat while the try printed and was shipped.
    beats = sorted(m.create_time.timestamp() for m in (InboxMessage.from_record(r)
                                                       for r in read_topic(system.config, topics.INBOX))
                   if m.kind is InboxKind.HEARTBEAT and m.execution_id == execution_id)
    assert len(beats) >= 2, beats
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert max(gaps) < 2.5, f"heartbeats {gaps} apart (the try took {took:.1f} s)"


SLOW = """
import time
from aiflow import Workflow, PythonOperator

def slow():  # 10 s: time for a CLI process to start and follow it while it runs, on a busy machine
    for i in range(25):
        print(f"tick {i}", flush=True)
        time.sleep(0.4)

with Workflow(name="slow"):
    PythonOperator(name="slow", python_callable=slow)
"""


def test_logs_follow_from_another_home_prints_lines_as_they_come_and_exits_at_the_end(
        system: System, tmp_path: Path) -> None:
    system.upload(SLOW)
    execution_id = ops.start_workflow_execution("slow", config=system.config)
    system.wait_for(lambda: system.tries(execution_id).get("slow") == ["RUNNING"], what="the try to run")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")},
           "AIFLOW_HOME": str(tmp_path / "elsewhere"), "AIFLOW_KAFKA_BOOTSTRAP": system.config.bootstrap,
           "AIFLOW_TOPIC_PREFIX": system.config.topic_prefix, "AIFLOW_DB_URI": system.config.values["db.uri"]}
    cli = subprocess.Popen([sys.executable, "-m", "aiflow.cli", "task-execution", "logs", execution_id, "slow",
                            "--follow"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cli.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("tick "):  # the runner's own line comes first
            lines.append(cli.stdout.readline())
            assert lines[-1], f"the command ended early: {cli.stderr.read()}"  # type: ignore[union-attr]
        # The first line came while the task still ran.
        assert ops.get_task_execution(execution_id, "slow", config=system.config).status == "RUNNING"
        rest = cli.stdout.read()
        assert cli.wait(timeout=60) == 0
    finally:
        if cli.poll() is None:
            cli.kill()
    ticks = [line for line in ("".join(lines) + rest).splitlines() if line.startswith("tick ")]
    assert ticks == [f"tick {i}" for i in range(25)]
    assert not (tmp_path / "elsewhere" / "logs").exists()
