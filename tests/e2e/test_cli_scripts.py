"""The CLI in scripts: -o json on acting commands, --wait and --watch exit codes, JSON service logs,
event filters and counts, delete-all. Separate processes against the session broker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiflow.config import Config
from aiflow.events import EventClient
from tests.conftest import make_config
from tests.e2e.test_cli_events import fresh_env, run

FLOWS = """
from aiflow import BashOperator, PythonOperator, Workflow

with Workflow(name="ok"):
    BashOperator(name="a", bash_command="echo fine")

with Workflow(name="bad"):
    BashOperator(name="a", bash_command="exit 3")

with Workflow(name="slow"):
    BashOperator(name="a", bash_command="sleep 600")

def linger():
    import signal, sys, time

    def stop(*_):
        time.sleep(2)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    time.sleep(600)

with Workflow(name="mixed"):  # "fails" ends the execution; "lingers" takes 2 s to stop after that
    BashOperator(name="fails", bash_command="sleep 1; exit 3")
    PythonOperator(name="lingers", python_callable=linger)
"""


@pytest.fixture
def services(kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A scheduler and a worker started with -d, -o json and JSON logs; the workflows of FLOWS uploaded."""
    env = fresh_env(tmp_path / "home", AIFLOW_KAFKA_BOOTSTRAP=kafka_bootstrap,
                    AIFLOW_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}")
    run(env, "topics", "create")
    started = [json.loads(run(env, service, "start", "-d", "-o", "json", "--log-format", "json").stdout)
               for service in ("scheduler", "worker")]
    assert [s["service"] for s in started] == ["scheduler", "worker"] and all(s["pid"] > 0 for s in started)
    (tmp_path / "flows.py").write_text(FLOWS)
    run(env, "workflow", "upload", str(tmp_path / "flows.py"))
    try:
        yield env
    finally:
        for service in ("worker", "scheduler"):
            run(env, service, "stop", check=False)


def test_start_wait_and_show_watch_exit_with_the_result(services: dict[str, str], tmp_path: Path) -> None:
    env = services
    done = run(env, "workflow-execution", "start", "ok", "--wait", "--timeout", "120", "-o", "json")
    shown = json.loads(done.stdout)
    assert shown["status"] == "SUCCESS" and [t["status"] for t in shown["tasks"]] == ["SUCCESS"]

    failed = run(env, "workflow-execution", "start", "bad", "--wait", "-o", "json", check=False)
    assert failed.returncode == 1, failed.stderr
    bad_id = json.loads(failed.stdout)["id"]
    assert json.loads(failed.stdout)["status"] == "FAILED"
    watched = run(env, "workflow-execution", "show", bad_id, "--watch", "-o", "json", check=False)
    assert watched.returncode == 1 and json.loads(watched.stdout)["status"] == "FAILED"
    # The execution ends with its first failed task; --wait returns once its other try has stopped too.
    mixed = run(env, "workflow-execution", "start", "mixed", "--wait", "--timeout", "120", "-o", "json", check=False)
    assert mixed.returncode == 1, mixed.stderr
    assert {t["task"]: t["status"] for t in json.loads(mixed.stdout)["tasks"]} == \
        {"fails": "FAILED", "lingers": "STOPPED"}

    started = json.loads(run(env, "workflow-execution", "start", "slow", "-o", "json").stdout)
    slow_id = started["id"]
    timed_out = run(env, "workflow-execution", "show", slow_id, "--watch", "--timeout", "2", "-o", "json",
                    check=False)
    assert timed_out.returncode == 3 and json.loads(timed_out.stdout)["status"] in ("INIT", "RUNNING")
    assert "has not ended" not in timed_out.stdout  # stdout stays parseable
    stopping = json.loads(run(env, "workflow-execution", "stop", slow_id, "-o", "json").stdout)
    assert stopping == {"id": slow_id, "stop_requested": True}
    stopped = run(env, "workflow-execution", "show", slow_id, "--watch", "--timeout", "120", "-o", "json",
                  check=False)
    assert stopped.returncode == 1 and json.loads(stopped.stdout)["status"] == "STOPPED"

    usage = run(env, "workflow-execution", "start", "ok", "--timeout", "5", check=False)
    assert usage.returncode == 2 and "--timeout goes with --wait" in usage.stderr
    deleted = json.loads(run(env, "workflow-execution", "delete", bad_id, "-o", "json").stdout)
    assert deleted == {"id": bad_id, "deleted": True}

    log_lines = (Path(env["AIFLOW_HOME"]) / "logs" / "scheduler.log").read_text().splitlines()
    entries = [json.loads(line) for line in log_lines if line.startswith("{")]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert entries[0]["time"].endswith("Z")


def test_event_count_and_filters_by_sender_and_offset(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = fresh_env(tmp_path / "home", AIFLOW_KAFKA_BOOTSTRAP=kafka_bootstrap,
                    AIFLOW_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}")
    run(env, "topics", "create")
    config: Config = make_config(tmp_path / "home", kafka_bootstrap, AIFLOW_TOPIC_PREFIX=env["AIFLOW_TOPIC_PREFIX"])
    sent = json.loads(run(env, "event", "send", "k", "one", "-o", "json").stdout)
    with EventClient(config, sender="loader") as client:
        later = [client.send_event("k", str(i)) for i in range(3)]
        client.send_event("other", "x")

    assert run(env, "event", "count").stdout.strip() == "5"
    assert json.loads(run(env, "event", "count", "--key", "k", "-o", "json").stdout)["count"] == 4
    by_sender = json.loads(run(env, "event", "list", "--sender", "loader", "--key", "k", "-o", "json").stdout)
    assert [e["value"] for e in by_sender] == ["0", "1", "2"]
    assert run(env, "event", "count", "--sender", "cli").stdout.strip() == "1"
    # One key, one partition: from the first loader event's offset on, the cli event before it is left out.
    assert sent["partition"] == later[0].partition and len({e.partition for e in later}) == 1
    from_offset = json.loads(run(env, "event", "list", "--key", "k", "--begin-offset", str(later[0].offset),
                                 "-o", "json").stdout)
    assert [e["value"] for e in from_offset] == ["0", "1", "2"]


def test_delete_all_snapshots_triggers_and_schedules(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = fresh_env(tmp_path / "home", AIFLOW_KAFKA_BOOTSTRAP=kafka_bootstrap,
                    AIFLOW_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}")
    run(env, "topics", "create")
    flow = tmp_path / "flow.py"
    for version in range(3):
        flow.write_text("from aiflow import Workflow, Operator\n"
                        f"with Workflow(name='w'):\n    Operator('a{version}')\n")
        run(env, "workflow", "upload", str(flow))
    for key in ("x", "y"):
        run(env, "workflow-trigger", "add", "w", "--event-key", key)
    run(env, "workflow-schedule", "add", "w", "interval@0 1 0 0")

    snaps = json.loads(run(env, "workflow-snapshot", "delete-all", "w", "-o", "json").stdout)
    assert snaps == {"workflow": "w", "deleted": [2, 1]}
    left = json.loads(run(env, "workflow-snapshot", "list", "w", "-o", "json").stdout)
    assert [s["version"] for s in left] == [3]
    assert run(env, "workflow-trigger", "delete-all", "w").stdout.startswith("Deleted 2 trigger(s) of w: ")
    assert json.loads(run(env, "workflow-trigger", "list", "w", "-o", "json").stdout) == []
    schedules = json.loads(run(env, "workflow-schedule", "delete-all", "w", "-o", "json").stdout)
    assert len(schedules["deleted"]) == 1
    assert json.loads(run(env, "workflow-schedule", "list", "w", "-o", "json").stdout) == []
    again = json.loads(run(env, "workflow-trigger", "delete-all", "w", "-o", "json").stdout)
    assert again == {"workflow": "w", "deleted": []}
