"""`AIFlowStack`: real aiflow services for integration tests — `aiflow standalone` (scheduler, router,
projector, worker, and a local broker unless one is given) in an aiflow home of its own.

The pytest plugin's `aiflow_stack` fixture starts one per test session. The broker is
`AIFLOW_KAFKA_BOOTSTRAP` when that is set, else a local broker on free loopback ports, with the jars
cached where your own aiflow home keeps them (`broker.cache_dir`), so they are fetched once. Every
stack has a topic prefix of its own, so stacks sharing a cluster never see each other's records.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aiflow.config import Config
from aiflow.errors import AIFlowError
from aiflow.sdk.status import WORKFLOW_FINISHED_SET, WorkflowStatus

if TYPE_CHECKING:
    from aiflow.ops import ExecutionInfo, TaskExecutionInfo, WorkflowInfo
    from aiflow.protocol.messages import Event


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AIFlowStack:
    """Running aiflow services and the helpers an integration test needs (all through `aiflow.ops`)."""

    def __init__(self, home: Path, env: Mapping[str, str]) -> None:
        self.home = home
        self.env = dict(env)  # the environment of the services: give it to processes that use the stack
        self.config = Config.load(home=home, environ=self.env)

    @property
    def bootstrap(self) -> str:
        return self.config.bootstrap

    # -- life --------------------------------------------------------------------------------
    @classmethod
    def start(cls, home: str | os.PathLike[str], bootstrap: str | None = None,
              environ: Mapping[str, str] | None = None) -> AIFlowStack:
        """Start `aiflow standalone -d --no-webserver` in `home` (created if needed): with the cluster at
        `bootstrap` (default: `AIFLOW_KAFKA_BOOTSTRAP`), else with a local broker of its own."""
        source = os.environ if environ is None else environ
        bootstrap = bootstrap or source.get("AIFLOW_KAFKA_BOOTSTRAP")
        path = Path(home).resolve()
        env = {k: v for k, v in source.items() if not k.startswith("AIFLOW_")}
        env.update(AIFLOW_HOME=str(path), AIFLOW_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}",
                   AIFLOW_METRICS_SCHEDULER_PORT="0", AIFLOW_METRICS_WORKER_PORT="0", AIFLOW_WORKER_STOP_GRACE="3")
        if bootstrap:
            env["AIFLOW_KAFKA_BOOTSTRAP"] = bootstrap
        else:
            cache = source.get("AIFLOW_BROKER_CACHE_DIR") or str(Config.load(environ=source).values["broker.cache_dir"])
            env.update(AIFLOW_BROKER_PORT=str(_free_port()), AIFLOW_BROKER_CONTROLLER_PORT=str(_free_port()),
                       AIFLOW_BROKER_CACHE_DIR=cache)
        stack = cls(path, env)
        stack.cli("standalone", "-d", "--no-webserver", timeout=300)
        return stack

    def stop(self) -> None:
        """Stop the services (and their running tries, and the broker they started)."""
        self.cli("standalone", "stop", check=False)

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """`aiflow ARGS` against this stack, as a process of its own; AIFlowError if it fails (with `check`)."""
        done = subprocess.run([sys.executable, "-m", "aiflow.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AIFlowError(f"aiflow {' '.join(args)} exited with {done.returncode}: "
                              f"{(done.stderr or done.stdout).strip()}")
        return done

    # -- helpers -----------------------------------------------------------------------------
    def upload(self, workflow_file: str | os.PathLike[str], files: Sequence[str | os.PathLike[str]] = (),
               namespace: str | None = None) -> list[WorkflowInfo]:
        """Upload a workflow file (and the files or folders it needs), as `aiflow workflow upload`."""
        from aiflow import ops

        return ops.upload_workflows(workflow_file, list(files), namespace=namespace, config=self.config)

    def start_execution(self, workflow: str, namespace: str | None = None) -> str:
        """Start an execution of the workflow's latest upload; returns its id."""
        from aiflow import ops

        return ops.start_workflow_execution(workflow, namespace, config=self.config)

    def stop_execution(self, execution_id: str) -> None:
        from aiflow import ops

        ops.stop_workflow_execution(execution_id, config=self.config)

    def execution(self, execution_id: str) -> ExecutionInfo | None:
        from aiflow import ops

        return ops.get_workflow_execution(execution_id, config=self.config)

    def tries(self, execution_id: str) -> list[TaskExecutionInfo]:
        """Every try of the execution, as `aiflow task-execution list` shows them."""
        from aiflow import ops

        return ops.list_task_executions(execution_id, config=self.config)

    def send_event(self, key: str, value: str | None = None, namespace: str | None = None) -> Event:
        from aiflow.events.client import EventClient

        with EventClient(self.config, namespace=namespace) as client:
            return client.send_event(key, value)

    def wait_for_execution(self, execution_id: str, status: str | WorkflowStatus | None = None,
                           timeout: float = 60) -> ExecutionInfo:
        """Wait until the execution has `status` (default: any finished one); AIFlowError after `timeout` s,
        or when it finishes with another status."""
        wanted = None if status is None else WorkflowStatus(status)
        deadline = time.monotonic() + timeout
        while True:
            info = self.execution(execution_id)
            if info is not None:
                now = WorkflowStatus(info.status)
                if (wanted is None and now in WORKFLOW_FINISHED_SET) or now == wanted:
                    return info
                if wanted is not None and now in WORKFLOW_FINISHED_SET:
                    raise AIFlowError(f"execution {execution_id} ended {now.value}, not {wanted.value}: "
                                      f"{self._describe(execution_id)}")
            if time.monotonic() > deadline:
                raise AIFlowError(f"execution {execution_id} is {info.status if info else 'unknown'} after "
                                  f"{timeout:g} s: {self._describe(execution_id)}")
            time.sleep(0.2)

    def wait_for_task(self, execution_id: str, task: str, status: str = "SUCCESS", tries: int = 1,
                      timeout: float = 60) -> list[TaskExecutionInfo]:
        """Wait until `tries` tries of the task have `status`; returns the task's tries."""
        deadline = time.monotonic() + timeout
        while True:
            found = [t for t in self.tries(execution_id) if t.task == task]
            if sum(t.status == status for t in found) >= tries:
                return found
            if time.monotonic() > deadline:
                raise AIFlowError(f"task {task} of execution {execution_id} has not {tries} tries {status} after "
                                  f"{timeout:g} s: {self._describe(execution_id)}")
            time.sleep(0.2)

    def _describe(self, execution_id: str) -> str:
        try:
            tries = self.tries(execution_id)
        except AIFlowError:
            return "no tries known"
        return ", ".join(f"{t.task}#{t.try_number} {t.status}{f' ({t.message})' if t.message else ''}"
                         for t in tries) or "no tries yet"

    def __repr__(self) -> str:
        return f"AIFlowStack(home={self.home}, bootstrap={self.bootstrap})"
