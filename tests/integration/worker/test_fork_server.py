"""The fork server, as real processes: exit codes are taken once (a reused pid cannot look finished),
and when the server dies its children end as lost and stop themselves."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from aiflow.events.context import TaskContext
from aiflow.worker.zygote import LOST_EXIT_CODE, ForkServer
from tests.conftest import process_alive

SLEEPER = """
import time
from aiflow import Workflow, PythonOperator
with Workflow(name="sleepy"):
    PythonOperator(name="t", python_callable=lambda: time.sleep(120))
"""


def wait_for(check: object, timeout: float = 30.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_exit_code_moves_from_the_servers_table_to_its_task(tmp_path: Path) -> None:
    server = ForkServer(dict(os.environ))
    try:
        task = server.spawn(["too", "few"], dict(os.environ), str(tmp_path), str(tmp_path / "log"))
        wait_for(lambda: task.poll() is not None)
        assert task.poll() == 2  # the runner's usage error
        assert task.pid not in server.exits  # pruned: a later child with this pid starts clean
    finally:
        server.close()


def test_when_the_fork_server_dies_its_children_end_as_lost_and_stop_themselves(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SLEEPER)
    env = {**os.environ, **TaskContext("default", "sleepy", "e1", "t", 1).to_env()}
    server = ForkServer(env)
    task = server.spawn([str(tmp_path / "flow.py"), "sleepy", "t"], env, str(tmp_path), str(tmp_path / "log"))
    log = tmp_path / "log"
    wait_for(lambda: log.exists() and "starting task t" in log.read_text())
    assert task.poll() is None
    os.kill(server.process.pid, signal.SIGKILL)
    wait_for(lambda: task.poll() is not None)
    assert task.poll() == LOST_EXIT_CODE and not server.alive()
    wait_for(lambda: not process_alive(task.pid), timeout=10)  # its parent watch stopped it
    server.close()
