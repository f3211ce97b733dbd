"""The scheduler's side of a snapshot's own process (aiflow/sdk/host.py): user code never runs here.

`SnapshotHost` starts the process, waits at most `workflows.load_timeout` for the workflow it
describes, and rebuilds it as a real `Workflow` whose tasks are plain operators and whose
conditions are the built-in ones or `RemoteCondition`s: proxies that ask the process, at most
`scheduler.condition_timeout` per question. A file that loops, exits, raises or runs out of its
memory cap (`workflows.load_memory_mb`) at import gives a WorkflowFileError saying which; a process
that stops answering is killed (its whole process group) and started again on the next question.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiflow.config import without_credentials
from aiflow.errors import AIFlowError, WorkflowFileError
from aiflow.protocol.messages import Event
from aiflow.sdk.conditions import (
    Condition,
    MeetAllCondition,
    MeetAnyCondition,
    SingleEventCondition,
    TaskRule,
    TaskStatusAllMetCondition,
    TaskStatusCondition,
)
from aiflow.sdk.state import Context, MemoryContext
from aiflow.sdk.status import TaskAction, TaskStatus
from aiflow.sdk.workflow import Operator, Workflow

log = logging.getLogger(__name__)


class HostError(AIFlowError):
    """The snapshot's process did not answer in time, died, or answered nonsense."""


class SnapshotHost:
    """One snapshot's process, for one workflow of it."""

    def __init__(self, file: Path, namespace: str, workflow: str, *, load_timeout: float, memory_mb: int,
                 condition_timeout: float) -> None:
        self.file = file
        self.namespace = namespace
        self.workflow = workflow
        self.load_timeout = load_timeout
        self.memory_mb = memory_mb
        self.condition_timeout = condition_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    # -- the process ---------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """Start the process and return the workflow as it describes it (WorkflowFileError if it cannot)."""
        self.close()
        argv = [sys.executable, "-m", "aiflow.sdk.host", "--memory-mb", str(self.memory_mb), str(self.file),
                self.namespace, self.workflow]
        self._process = subprocess.Popen(argv, cwd=self.file.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         start_new_session=True, env=without_credentials(os.environ))
        self._buffer = b""
        try:
            answer = self._read(self.load_timeout)
        except HostError as exc:
            self.close()
            raise WorkflowFileError(f"{self.file.name}: {exc} while loading workflow {self.namespace}.{self.workflow}"
                                    f"{' (workflows.load_timeout)' if 'did not answer' in str(exc) else ''}") from None
        if "error" in answer:
            self.close()
            raise WorkflowFileError(str(answer["error"]))
        if self._process.poll() is not None or not _has_remote(answer["workflow"]):
            self.close()  # nothing left to ask it
        return dict(answer["workflow"])

    def _read(self, timeout: float) -> dict[str, Any]:
        process = self._process
        assert process is not None and process.stdout is not None
        deadline = time.monotonic() + timeout
        fd = process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostError(f"its process did not answer within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                code = process.wait()
                raise HostError(f"its process ended (exit code {code}{_signal_name(code)})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            raise HostError(f"its process answered {line[:200]!r}") from None
        if not isinstance(answer, dict):
            raise HostError(f"its process answered {line[:200]!r}")
        return answer

    def ask(self, condition_id: int, event: Event, context: Context) -> bool:
        """Evaluate remote condition `condition_id`; the rule states in `context` are updated in place."""
        if not isinstance(context, MemoryContext):
            raise HostError(f"a condition of the user's needs a MemoryContext, got {type(context).__name__}")
        if self._process is None or self._process.poll() is not None:
            self.load()
        process = self._process
        assert process is not None and process.stdin is not None
        request = {"condition": condition_id, "event": base64.b64encode(event.encode()).decode(),
                   "states": dict(context.states),
                   "statuses": {t: TaskStatus(s).value for t, s in context.task_statuses.items()}}
        try:
            process.stdin.write((json.dumps(request) + "\n").encode())
            process.stdin.flush()
            answer = self._read(self.condition_timeout)
        except (OSError, HostError) as exc:
            self.close()
            raise HostError(f"condition of {self.namespace}.{self.workflow}: {exc}; its process is started again "
                            "on the next question") from None
        if "error" in answer:
            raise HostError(str(answer["error"]))
        context.states.clear()
        context.states.update(answer["states"])
        return bool(answer["met"])

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the process and whatever the user's code started
            except (ProcessLookupError, PermissionError):
                pass
        process.wait()
        if process.stdout is not None:
            process.stdout.close()

    # -- the workflow ------------------------------------------------------------------------------
    def workflow_object(self, description: dict[str, Any]) -> Workflow:
        """The described workflow as the scheduler's core uses it."""
        wf = Workflow(description["name"], description["namespace"])
        with wf:
            for t in description["tasks"]:
                Operator(t["name"], periodic_expression=t["periodic_expression"], max_retries=t["max_retries"],
                         retry_delay=t["retry_delay"], timeout=t["timeout"])
        built: dict[int, Condition] = {}
        wf.rules = {task: [TaskRule(self._condition(r["condition"], built), TaskAction(r["action"]), r["line"])
                           for r in rules] for task, rules in description["rules"].items()}
        return wf

    def _condition(self, spec: dict[str, Any], built: dict[int, Condition]) -> Condition:
        ref = int(spec["ref"])
        if ref in built:
            return built[ref]
        kind = spec["type"]
        children = [self._condition(c, built) for c in spec.get("conditions", [])]
        condition: Condition
        if kind == "SingleEventCondition":
            condition = SingleEventCondition(spec["key"], spec["namespace"])
        elif kind == "TaskStatusCondition":
            condition = TaskStatusCondition(spec["task"], TaskStatus(spec["status"]), spec["workflow"],
                                            spec["namespace"])
        elif kind == "TaskStatusAllMetCondition":
            condition = TaskStatusAllMetCondition([c for c in children if isinstance(c, TaskStatusCondition)])
        elif kind == "MeetAllCondition":
            condition = MeetAllCondition(spec["name"], children)
        elif kind == "MeetAnyCondition":
            condition = MeetAnyCondition(children)
        elif kind == "remote":
            condition = RemoteCondition(self, int(spec["id"]), spec)
        else:
            raise WorkflowFileError(f"{self.file.name}: unknown condition type {kind!r}")
        built[ref] = condition
        return condition


class RemoteCondition(Condition):
    """A condition of the user's own, evaluated in its snapshot's process."""

    def __init__(self, host: SnapshotHost, condition_id: int, spec: dict[str, Any]) -> None:
        super().__init__(list(spec["event_keys"]), spec["namespace"])
        self.host = host
        self.condition_id = condition_id
        self.class_name = str(spec["class"])
        self._subscriptions = [(str(ns), str(key)) for ns, key in spec["subscriptions"]]

    def subscriptions(self, default_namespace: str) -> list[tuple[str, str]]:
        return list(self._subscriptions)

    def is_met(self, event: Event, context: Context) -> bool:
        return self.host.ask(self.condition_id, event, context)

    def __repr__(self) -> str:
        return f"RemoteCondition({self.class_name})"


def _has_remote(description: dict[str, Any]) -> bool:
    def remote(spec: dict[str, Any]) -> bool:
        return spec.get("type") == "remote" or any(remote(c) for c in spec.get("conditions", []))
    return any(remote(r["condition"]) for rules in description["rules"].values() for r in rules)


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return f", {signal.Signals(-code).name}"
        except ValueError:
            return ""
    return ""
