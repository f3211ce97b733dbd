"""`aiflow workflow-execution start` as a whole process, with the real broker and a SQLite store: it returns once
Kafka holds the start command, and reads the store without SQLAlchemy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from aiflow import ops
from aiflow.config import Config
from aiflow.kafka import topics
from aiflow.protocol.commands import Command
from aiflow.protocol.messages import InboxKind, InboxMessage
from tests.conftest import REPO, read_topic
from tests.unit.test_cli_startup import PROBE


def test_start_returns_with_its_command_in_kafka_and_never_loads_sqlalchemy(kafka_config: Config) -> None:
    config = kafka_config
    ops.upload_workflows(REPO / "samples" / "quickstart" / "quickstart_workflow.py", [], config=config)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}, "AIFLOW_HOME": str(config.home),
           "AIFLOW_KAFKA_BOOTSTRAP": config.bootstrap, "AIFLOW_TOPIC_PREFIX": config.topic_prefix}
    done = subprocess.run([sys.executable, "-c", PROBE, "workflow-execution", "start", "quickstart"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    *printed, loaded = done.stdout.strip().splitlines()
    assert printed[0].startswith("Workflow execution: ") and printed[0].endswith(" submitted."), printed
    execution_id = printed[0].split()[2]
    modules = set(json.loads(loaded))
    assert "confluent_kafka" in modules  # it did send
    assert {m for m in modules if m.startswith(("sqlalchemy", "alembic"))} == set()

    commands = [m for m in (InboxMessage.from_record(r) for r in read_topic(config, topics.INBOX))
                if m.kind is InboxKind.COMMAND]
    [start] = [m for m in commands if m.execution_id == execution_id]
    assert start.command is Command.START_EXECUTION and (start.namespace, start.workflow) == ("default", "quickstart")
    assert start.args["snapshot_version"] == "1" and start.args["run_type"] == "MANUAL"
