"""`aiflow status`: what it makes of the inbox's beacons and heartbeats, and how it prints them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import click
from click.testing import CliRunner
from confluent_kafka import TopicPartition

from aiflow.cli.status_cmd import partitions_text, print_status, workers_heard
from aiflow.config import Config
from aiflow.protocol.messages import InboxMessage, TaskStatusReport

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def _at(m: InboxMessage, seconds_ago: float) -> InboxMessage:
    return replace(m, create_time=NOW - timedelta(seconds=seconds_ago))


def test_a_worker_shows_its_last_beacon_and_the_tries_it_still_runs() -> None:
    report = TaskStatusReport("e1", "train", 2, None, worker="w1")
    messages = [
        _at(InboxMessage.for_worker("w1", 3), 6),
        _at(InboxMessage.for_report("default", "wf", report), 5),
        _at(InboxMessage.for_report("default", "wf", replace(report, task="prep", try_number=1, status="RUNNING")), 4),
        _at(InboxMessage.for_report("default", "wf", replace(report, task="prep", try_number=1, status="SUCCESS")), 3),
        _at(InboxMessage.for_worker("w1", 2), 1),
        _at(InboxMessage.for_worker("w2", 4), 2),
    ]
    rows = workers_heard(messages, NOW)
    assert [r["worker"] for r in rows] == ["w1", "w2"]
    assert rows[0]["free_slots"] == 2 and rows[0]["seconds_ago"] == 1.0
    assert rows[0]["running_tries"] == ["wf/train#2 (e1)"]
    assert rows[1]["running_tries"] == []
    assert rows[0]["queues"] == ["default"]  # what it serves, from its beacon


def test_partitions_are_shown_by_topic_without_the_prefix(tmp_path: Any) -> None:
    config = Config.load(home=tmp_path, environ={"AIFLOW_TOPIC_PREFIX": "p"})
    assigned = [TopicPartition("p.inbox", 2), TopicPartition("p.inbox", 0), TopicPartition("p.events", 1)]
    assert partitions_text(config, assigned) == "events/1 inbox/0,2"


STATUS = {
    "kafka": "127.0.0.1:9092", "topic_prefix": "aiflow",
    "services": [{"role": "scheduler", "group": "aiflow-scheduler", "state": "stable",
                  "client_id": "aiflow-scheduler-h", "host": "127.0.0.1", "partitions": "inbox/0,1,2",
                  "member_id": "m1"},
                 {"role": "worker", "group": "aiflow-worker", "state": "empty", "client_id": "", "host": "",
                  "partitions": "", "member_id": ""}],
    "workers": [{"worker": "w1", "queues": ["default", "gpu"],
                 "last_heard": "2025-01-01T12:00:00+00:00", "seconds_ago": 1.0, "free_slots": 2,
                 "running_tries": ["wf/train#2 (e1)"]}],
    "lag": [{"group": "aiflow-scheduler", "topic": "aiflow.inbox", "partition": 0, "committed": 10, "end": 12,
             "lag": 2}],
}


def test_the_table_says_what_runs_in_one_line_then_each_part() -> None:
    result = CliRunner().invoke(_printer, ["plain"])
    lines = result.output.splitlines()
    assert lines[0] == ("Kafka 127.0.0.1:9092, topics aiflow.*: 1 schedulers, 0 routers, 0 projectors, 0 workers in "
                        "their groups; 1 workers heard; 2 records not yet committed")
    assert "w1\tdefault,gpu\t2025-01-01T12:00:00+00:00\t1.0\t2\twf/train#2 (e1)" in lines


def test_json_is_the_whole_status() -> None:
    result = CliRunner().invoke(_printer, ["json"])
    assert json.loads(result.output) == STATUS


@click.command()
@click.argument("fmt")
def _printer(fmt: str) -> None:
    print_status(STATUS, fmt)
