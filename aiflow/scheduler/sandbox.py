"""The scheduler's side of a snapshot's own process (aiflow/sdk/host.py): user code never runs here.

`SnapshotHost` starts the process, waits at most `workflows.load_timeout` for the workflow it
describes, and rebuilds it as a real `Workflow` whose tasks are plain operators and whose
conditions are the built-in ones or `RemoteCondition`s: proxies that ask the process, at most
`scheduler.condition_timeout` per question. A file that loops, exits, raises or runs out of its
memory cap (`workflows.load_memory_mb`) at import gives a WorkflowFileError saying which. A process
that dies or stops answering is killed (its whole process group); its conditions are not met until
`revive`, called before a transaction opens, starts it again `RESTART_AFTER` seconds later — so a
condition that hangs costs the scheduler one `condition_timeout` at most every `RESTART_AFTER`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from aiflow.config import without_credentials
from aiflow.errors import AIFlowError, WorkflowFileError
from aiflow.process import python_module, signal_group
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
from aiflow.sdk.workflow import DEFAULT_QUEUE, Operator, Workflow

log = logging.getLogger(__name__)


RESTART_AFTER = 30.0  # seconds a process that stopped answering stays down before it is started again


class HostError(AIFlowError):
    """The snapshot's process did not answer in time, died, or answered nonsense."""


class HostTimeout(HostError):
    """The snapshot's process did not answer in time."""


class SnapshotHost:
    """One process of user code: a snapshot's, for one workflow of it (`for_workflow`), or the one
    for a workflow's trigger conditions (`for_conditions`)."""

    def __init__(self, args: list[str], cwd: Path, label: str, *, load_timeout: float, memory_mb: int,
                 condition_timeout: float) -> None:
        self.args = args
        self.cwd = cwd
        self.label = label
        self.load_timeout = load_timeout
        self.memory_mb = memory_mb
        self.condition_timeout = condition_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.needed = False  # it has conditions to evaluate, so it is kept running
        self._restart_at = 0.0
        self._aborted = False
        # `abort` comes from another thread: it and the taking of `_process` (load, close) hold this lock,
        # so a process is never signalled after it was reaped (its pid could then be another's).
        self._process_lock = threading.Lock()

    @classmethod
    def for_workflow(cls, file: Path, namespace: str, workflow: str, **limits: Any) -> SnapshotHost:
        return cls([str(file), namespace, workflow], file.parent, f"{file.name}: workflow {namespace}.{workflow}",
                   **limits)

    @classmethod
    def for_conditions(cls, specs: list[dict[str, Any]], namespace: str, workflow: str, **limits: Any) -> SnapshotHost:
        """Trigger conditions: their classes import from the scheduler's folder and path, as they did
        when the trigger was added."""
        return cls(["--conditions", json.dumps(specs), namespace], Path.cwd(),
                   f"the triggers of {namespace}.{workflow}", **limits)

    # -- the process ---------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """Start the process and return what it describes (WorkflowFileError if it cannot)."""
        self.close()
        argv = [*python_module("aiflow.sdk.host"), "--memory-mb", str(self.memory_mb), *self.args]
        with self._process_lock:
            self._process = subprocess.Popen(argv, cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             start_new_session=True, env=without_credentials(os.environ))
            if self._aborted:  # abort() came before there was a process to end
                signal_group(self._process.pid, signal.SIGKILL)
        self._buffer = b""
        try:
            answer = self._read(self.load_timeout)
        except (HostError, OSError, ValueError) as exc:  # whatever talking to it fails with: not the scheduler's end
            self.close()
            setting = " (workflows.load_timeout)" if isinstance(exc, HostTimeout) else ""
            raise WorkflowFileError(f"{self.label}: {exc} while loading{setting}") from None
        if "error" in answer:
            self.close()
            raise WorkflowFileError(str(answer["error"]))
        self.needed = _has_remote(answer)
        if not self.needed:
            self.close()  # nothing left to ask it
        return answer

    def _read(self, timeout: float) -> dict[str, Any]:
        process = self._process
        assert process is not None and process.stdout is not None
        deadline = time.monotonic() + timeout
        fd = process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostTimeout(f"its process did not answer within {timeout:.0f} s")
            ready = _wait(fd, select.POLLIN, left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:  # it closed its answers: it ended, or will not answer again
                until = time.monotonic() + 1.0  # an ending process closes its pipes a moment before it is gone
                while (ended := _exit_code(process.pid)) is None and time.monotonic() < until:
                    time.sleep(0.01)
                self.close()
                if ended is None:
                    raise HostError("its process closed its answers")
                raise HostError(f"its process ended (exit code {ended}{_signal_name(ended)})")
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
        """Evaluate remote condition `condition_id`; the rule states in `context` are updated in place.

        It never starts the process: questions come inside the scheduler's transaction, which must not
        wait for a file to load. A process that died or stopped answering is started again by `revive`,
        before a transaction, at most every RESTART_AFTER seconds; until then its conditions are not met."""
        if not isinstance(context, MemoryContext):
            raise HostError(f"a condition of the user's needs a MemoryContext, got {type(context).__name__}")
        process = self._process
        if process is None or _exit_code(process.pid) is not None or process.stdin is None:
            self._down()
            raise HostError(f"a condition of {self.label}: its process is down; it is started again within "
                            f"{RESTART_AFTER:.0f} s")
        request = {"condition": condition_id, "event": base64.b64encode(event.encode()).decode(),
                   "states": dict(context.states),
                   "statuses": {t: TaskStatus(s).value for t, s in context.task_statuses.items()}}
        try:
            self._write((json.dumps(request) + "\n").encode(), time.monotonic() + self.condition_timeout)
            answer = self._read(self.condition_timeout)
        except (OSError, ValueError, HostError) as exc:
            self._down()
            raise HostError(f"a condition of {self.label}: {exc}; its process is started again within "
                            f"{RESTART_AFTER:.0f} s") from None
        if "error" in answer:
            raise HostError(str(answer["error"]))
        context.states.clear()
        context.states.update(answer["states"])
        return bool(answer["met"])

    def _write(self, data: bytes, deadline: float) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        fd = process.stdin.fileno()
        os.set_blocking(fd, False)  # a process that reads no more cannot block the scheduler on a full pipe
        while data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostError(f"its process took no question within {self.condition_timeout:.0f} s")
            ready = _wait(fd, select.POLLOUT, left)
            if ready:
                data = data[os.write(fd, data):]

    def _down(self) -> None:
        if self._process is not None:
            self.close()
            self._restart_at = time.monotonic() + RESTART_AFTER

    def revive(self) -> None:
        """Start the process again if it is needed (it has conditions to evaluate), down, and was down
        long enough; called outside any transaction."""
        if not self.needed or (self._process is not None and _exit_code(self._process.pid) is None):
            return
        if time.monotonic() < self._restart_at:
            return
        try:
            self.load()
        except WorkflowFileError as exc:
            self._restart_at = time.monotonic() + RESTART_AFTER
            log.error("%s: its process could not be started again: %s", self.label, exc)

    def abort(self) -> None:
        """End a load under way on another thread at once (its `load` raises WorkflowFileError), and any that
        starts later: for a scheduler that stops, which would otherwise wait up to `load_timeout` for it."""
        with self._process_lock:
            self._aborted = True
            if self._process is not None:
                signal_group(self._process.pid, signal.SIGKILL)

    def close(self) -> None:
        with self._process_lock:
            process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        # The process and whatever the user's code started, even if the process itself has ended (not reaped
        # yet, its pid cannot have been reused).
        signal_group(process.pid, signal.SIGKILL)
        process.wait()
        if process.stdout is not None:
            process.stdout.close()

    # -- the workflow ------------------------------------------------------------------------------
    def workflow_object(self, answer: dict[str, Any]) -> Workflow:
        """The described workflow as the scheduler's core uses it."""
        description = answer["workflow"]
        wf = Workflow(description["name"], description["namespace"])
        with wf:
            for t in description["tasks"]:
                Operator(t["name"], periodic_expression=t["periodic_expression"], max_retries=t["max_retries"],
                         retry_delay=t["retry_delay"], timeout=t["timeout"], queue=t.get("queue", DEFAULT_QUEUE))
        built: dict[int, Condition] = {}
        wf.rules = {task: [TaskRule(self._condition(r["condition"], built), TaskAction(r["action"]), r["line"])
                           for r in rules] for task, rules in description["rules"].items()}
        for condition in built.values():  # composites learn the workflow's namespace, as where they were written
            condition.bind(wf.namespace, wf.name)
        return wf

    def conditions(self, answer: dict[str, Any]) -> tuple[list[Condition | None], dict[int, str]]:
        """The described trigger conditions, and why those that are None could not be rebuilt."""
        built: dict[int, Condition] = {}
        conditions = [None if spec is None else self._condition(spec, built) for spec in answer["conditions"]]
        return conditions, {int(i): str(reason) for i, reason in answer.get("errors", {}).items()}

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
            raise WorkflowFileError(f"{self.label}: unknown condition type {kind!r}")
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


def _has_remote(answer: object) -> bool:
    """Whether a description holds a remote condition, anywhere in it."""
    if isinstance(answer, dict):
        return answer.get("type") == "remote" or any(_has_remote(v) for v in answer.values())
    if isinstance(answer, list):
        return any(_has_remote(v) for v in answer)
    return False


def _wait(fd: int, events: int, timeout: float) -> bool:
    """Whether `fd` is ready for `events` within `timeout` seconds. poll(), not select(): a scheduler
    with a thousand connections open has descriptors past select()'s limit of 1024."""
    poller = select.poll()
    poller.register(fd, events | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def _exit_code(pid: int) -> int | None:
    """The exit code of a child that has ended (negative: the signal), None while it runs. It does not
    reap the child, so its pid, and its process group's, stay ours until `close` kills the group."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return -1
    if info is None:
        return None
    return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return f", {signal.Signals(-code).name}"
        except ValueError:
            return ""
    return ""
