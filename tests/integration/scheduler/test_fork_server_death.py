"""A worker whose fork server dies: the try it ran fails at once with the reason, a new fork server
starts, and the retry runs on it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from aiflow import ops
from tests.integration.scheduler.conftest import System

FLOW = """
import os, time
from aiflow import Workflow, PythonOperator

def work():
    if os.environ["AIFLOW_TRY_NUMBER"] == "1":
        time.sleep(120)

with Workflow(name="forked"):
    PythonOperator(name="t", python_callable=work, max_retries=1)
"""


def fork_servers() -> set[int]:
    """This process's children that are fork servers."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(") ", 1)[1].split()[1])
        if ppid == os.getpid() and b"aiflow.worker.zygote" in cmdline:
            found.add(int(proc.name))
    return found


def test_a_dead_fork_server_fails_its_tries_at_once_and_is_started_again(system: System) -> None:
    system.upload(FLOW)
    execution_id = ops.start_workflow_execution("forked", config=system.config, wait=60)
    system.wait_for(lambda: system.tries(execution_id).get("t") == ["RUNNING"], what="the first try running")
    [zygote] = fork_servers()
    os.kill(zygote, signal.SIGKILL)
    system.wait_for(lambda: system.tries(execution_id).get("t") == ["FAILED", "SUCCESS"], timeout=30,
                    what="the try failed and its retry run")
    first = ops.get_task_execution(execution_id, "t", 1, config=system.config)
    assert first is not None and "fork server died" in first.message
    assert len(fork_servers() - {zygote}) == 1  # a new one
