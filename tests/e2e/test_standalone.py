"""`aiflow standalone -d` with its own broker: it starts the broker again when it dies, the workflow
goes on, and `aiflow standalone stop` leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

from tests.conftest import free_port_block, process_alive, processes_of, task_processes, wait_until
from tests.e2e.test_cli_events import fresh_env, run

FLOW = """
import signal, time
from aiflow import Workflow, PythonOperator, BashOperator, TaskAction

def forever():
    signal.signal(signal.SIGTERM, lambda *_: None)  # a task that will not stop when asked
    while True:
        time.sleep(1)

with Workflow(name="kept"):
    PythonOperator(name="forever", python_callable=forever)
    BashOperator(name="on_go", bash_command="echo ran >> ../ran.txt").action_on_event_received(TaskAction.START, "go")
"""


def _get(url: str) -> object:
    """The JSON at `url`, or None while nothing answers there (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def test_standalone_restarts_its_broker_and_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    base = free_port_block(3)
    env = fresh_env(home, AIFLOW_BROKER_PORT=str(base), AIFLOW_BROKER_CONTROLLER_PORT=str(base + 1),
                    AIFLOW_WORKER_STOP_GRACE="30", AIFLOW_WEBSERVER_PORT=str(base + 2))
    pid_file = home / "broker" / "broker.pid"
    try:
        assert "aiflow standalone is running" in run(env, "standalone", "-d").stdout
        (tmp_path / "kept.py").write_text(FLOW)
        run(env, "workflow", "upload", str(tmp_path / "kept.py"))
        started = run(env, "workflow-execution", "start", "kept").stdout.strip()
        execution_id = started.removeprefix("Workflow execution: ").removesuffix(" submitted.")
        ran = home / "working_dir" / "kept" / execution_id / "ran.txt"
        # The web server runs with it: the execution is there over HTTP too.
        web = f"http://127.0.0.1:{base + 2}"
        wait_until(lambda: _get(f"{web}/api/v1/executions/{execution_id}") is not None, 60, "the web server")
        assert _get(f"{web}/api/v1/executions/{execution_id}")["workflow"] == "kept"  # type: ignore[index]

        first_broker = int(pid_file.read_text())
        os.kill(first_broker, signal.SIGKILL)
        wait_until(lambda: pid_file.exists() and int(pid_file.read_text()) != first_broker
                   and process_alive(int(pid_file.read_text())), 120, "the broker started again")
        wait_until(lambda: run(env, "broker", "status", check=False).returncode == 0, 120, "the broker answering")
        run(env, "event", "send", "go")
        wait_until(lambda: ran.exists() and ran.read_text() == "ran\n", 120, "the workflow going on")

        def forever() -> list[list[str]]:
            tries = run(env, "task-execution", "list", execution_id, "-o", "plain").stdout
            return [line.split("\t")[:3] for line in tries.splitlines() if line.startswith("forever")]

        # The store shows what the projector has read: if the broker died right after `forever` started, its
        # RUNNING reaches the store only once the projector has its partitions back, perhaps after `on_go` ran.
        wait_until(lambda: forever() != [["forever", "1", "QUEUED"]], 60, "the store to show forever's try started")
        assert forever() == [["forever", "1", "RUNNING"]]  # the same try, not failed and started again
        assert "exited with code -9; starting it again" in (home / "logs" / "standalone.log").read_text()

        broker = int(pid_file.read_text())
        standalone = int((home / "run" / "standalone.pid").read_text())
        assert task_processes(home)  # the try that will not stop
        run(env, "standalone", "stop")  # with a try that ignores SIGTERM (and a stop grace of 30 s)
        assert not process_alive(standalone) and not process_alive(broker)
        wait_until(lambda: not processes_of(home), 10, "every process of the home to be gone")
    finally:
        run(env, "standalone", "stop", check=False)
