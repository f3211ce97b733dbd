"""`aiflow workflow-execution start` as a whole process, with the real broker and a SQLite store: it returns once
Kafka holds the start command, reads the store without SQLAlchemy, and tells whether a scheduler will take it
through the one admin client that checked the cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from aiflow import ops
from aiflow.config import Config
from aiflow.kafka import clients, topics
from aiflow.protocol.commands import Command
from aiflow.protocol.messages import InboxKind, InboxMessage
from tests.conftest import REPO, read_topic
from tests.unit.test_cli_startup import PROBE

# The start command as `aiflow` runs it (main()), saying each admin client it makes as it makes it; the atexit line
# shows whether the interpreter's teardown ran.
COUNTING = """
import atexit, sys
from aiflow.kafka import clients
real = clients.admin
def admin(config, **extra):
    print("admin client made", flush=True)
    return real(config, **extra)
clients.admin = admin
atexit.register(print, "teardown")
from aiflow.cli.main import main
sys.argv = ["aiflow", *sys.argv[1:]]
main()
"""


def _env(config: Config) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}, "AIFLOW_HOME": str(config.home),
            "AIFLOW_KAFKA_BOOTSTRAP": config.bootstrap, "AIFLOW_TOPIC_PREFIX": config.topic_prefix}


def test_start_returns_with_its_command_in_kafka_and_never_loads_sqlalchemy(kafka_config: Config) -> None:
    config = kafka_config
    ops.upload_workflows(REPO / "samples" / "quickstart" / "quickstart_workflow.py", [], config=config)
    done = subprocess.run([sys.executable, "-c", PROBE, "workflow-execution", "start", "quickstart"],
                          env=_env(config), capture_output=True, text=True, timeout=60)
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


@pytest.mark.parametrize("scheduler", [False, True])
def test_start_tells_whether_a_scheduler_is_in_its_group_through_the_client_that_checked_kafka_and_ends_at_once(
        kafka_config: Config, scheduler: bool) -> None:
    config = kafka_config
    ops.upload_workflows(REPO / "samples" / "quickstart" / "quickstart_workflow.py", [], config=config)
    member = None
    if scheduler:  # a member of the schedulers' group, as a scheduler is: the note must not be printed
        member = clients.consumer(config, role="test-scheduler", group_id=f"{config.topic_prefix}-scheduler")
        member.subscribe([topics.name(config, topics.INBOX)])
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.1)
        assert member.assignment(), "the stand-in scheduler got no partition"
    try:
        done = subprocess.run([sys.executable, "-c", COUNTING, "workflow-execution", "start", "quickstart"],
                              env=_env(config), capture_output=True, text=True, timeout=60)
    finally:
        if member is not None:
            member.close()
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip().splitlines()
    [submitted] = [line for line in printed if line.startswith("Workflow execution: ")]
    assert submitted.endswith(" submitted."), printed
    assert ("note: no scheduler is running" in done.stderr) is (not scheduler), done.stderr
    # One admin client checked that Kafka answers and then counted the schedulers.
    assert printed.count("admin client made") == 1, printed
    # It ended once its work was done, without the interpreter's teardown (aiflow.cli.common.end_at_once).
    assert "teardown" not in printed, printed
