"""Workflow executions and the tries of their tasks: starting and stopping them (commands to the scheduler),
and reading what the scheduler stored about them.

Every read goes through store.reads, which answers from a SQLite store without SQLAlchemy: listing executions or
tries, or starting one, does not import it (only deleting an execution does)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aiflow.config import Config
from aiflow.errors import Conflict, KafkaUnavailable, NotFound
from aiflow.ops._common import _Info, _no_workflow
from aiflow.ops._dispatch import _config, _ns, _via_api
from aiflow.ops._publish import check_reachable, scheduler_members, send_inbox_command
from aiflow.protocol.commands import Command
from aiflow.store.reads import reading


@dataclass
class TaskExecutionInfo(_Info):
    execution_id: str
    task: str
    try_number: int
    status: str
    begin_date: datetime | None
    end_date: datetime | None
    message: str
    cause: str
    worker: str


@dataclass
class ExecutionInfo(_Info):
    id: str
    namespace: str
    workflow: str
    snapshot_version: int
    status: str
    run_type: str
    begin_date: datetime | None
    end_date: datetime | None
    cause: str
    message: str = ""  # why it failed, when no try says it (its workflow could not be loaded)


def _no_execution(execution_id: str) -> NotFound:
    return NotFound(f"workflow execution {execution_id} does not exist")


# The statuses are imported where they are judged: importing them loads the whole SDK with its cron parser (about
# 10 ms), which reading executions and tries does not need.
def _finished(status: str) -> bool:
    """Whether an execution in this status has ended."""
    from aiflow.sdk.status import WORKFLOW_FINISHED_SET, WorkflowStatus

    return WorkflowStatus(status) in WORKFLOW_FINISHED_SET


def _alive(status: str) -> bool:
    """Whether a try in this status is queued or runs (or is stopping or about to be retried)."""
    from aiflow.sdk.status import TASK_ALIVE_SET, TaskStatus

    return TaskStatus(status) in TASK_ALIVE_SET


def new_execution_id() -> str:
    return uuid.uuid4().hex[:12]


# -- workflow executions ---------------------------------------------------------------------
@_via_api
def start_workflow_execution(workflow_name: str, namespace: str | None = None, *, config: Config | None = None,
                             wait: float = 10.0) -> str:
    """Start an execution of the workflow's latest snapshot; returns its id.

    Waits up to `wait` seconds for a scheduler to take it (so `list` shows it at once); a workflow
    that is disabled is refused.
    """
    config = _config(config)
    namespace = _ns(config, namespace)
    with reading(config) as r:
        found = r.latest_snapshot(namespace, workflow_name)
    if found is None:
        raise _no_workflow(namespace, workflow_name)
    if not found["is_enabled"]:
        raise Conflict(f"workflow {namespace}.{workflow_name} is disabled: `aiflow workflow enable "
                       f"{workflow_name}` first")
    assert found["version"] is not None, \
        f"workflow {namespace}.{workflow_name} has no snapshot {found['latest_version']}"
    args = {"snapshot_version": str(found["version"]), "snapshot_uri": found["uri"],
            "snapshot_sha256": found["sha256"], "workflow_file": found["workflow_file"], "run_type": "MANUAL",
            "cause": "started by a user"}
    execution_id = new_execution_id()
    check_reachable(config)
    send_inbox_command(config, namespace, workflow_name, Command.START_EXECUTION, execution_id, args=args)
    if wait > 0:
        wait_for_execution(execution_id, wait, config=config)
    return execution_id


@_via_api
def scheduler_running(*, config: Config | None = None) -> bool | None:
    """Whether a scheduler is in its consumer group now (one request to Kafka), so an execution started
    is taken at once; None when that cannot be told (Kafka does not answer; in client mode, always)."""
    members = scheduler_members(_config(config))
    return None if members is None else members > 0


def wait_for_execution(execution_id: str, timeout: float, *, config: Config | None = None) -> bool:
    """True once the execution shows in the store; False if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if get_workflow_execution(execution_id, config=config) is not None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@_via_api
def get_workflow_execution(execution_id: str, *, config: Config | None = None) -> ExecutionInfo | None:
    with reading(_config(config)) as r:
        row = r.execution(execution_id)
    return None if row is None else ExecutionInfo(**row)


@_via_api
def list_workflow_executions(workflow_name: str, namespace: str | None = None, limit: int | None = None,
                             offset: int | None = None, *, status: str | None = None,
                             config: Config | None = None) -> list[ExecutionInfo]:
    """The workflow's executions, newest first (only those with `status`, when given)."""
    config = _config(config)
    namespace = _ns(config, namespace)
    with reading(config) as r:
        workflow_id = r.workflow_id(namespace, workflow_name)
        if workflow_id is None:
            raise _no_workflow(namespace, workflow_name)
        rows = r.executions(workflow_id, None if status is None else status.upper(), limit, offset)
    return [ExecutionInfo(**row) for row in rows]


def _command(execution_id: str, command: Command, task: str | None, config: Config | None) -> ExecutionInfo:
    """Send the command for the execution (and its task, if given) once the store knows both. What the
    scheduler would pass over without a word is refused here, before anything is sent: a START of a task
    whose latest try is alive, or of a task of an execution that has finished."""
    config = _config(config)
    with reading(config) as r:
        row = r.execution(execution_id)
        if row is None:
            raise _no_execution(execution_id)
        info = ExecutionInfo(**row)
        if task is not None:
            definition = r.workflow_definition(info.namespace, info.workflow)
            if definition is None:  # the workflow was deleted just now, and its executions with it
                raise _no_execution(execution_id)
            if task not in {t["name"] for t in json.loads(definition)["tasks"]}:
                raise NotFound(f"workflow {info.workflow} has no task {task!r}")
        if command is Command.START_TASK:
            assert task is not None
            if _finished(info.status):
                raise Conflict(f"workflow execution {execution_id} is {info.status}: it starts no task any more; "
                               f"start a new execution of {info.workflow}")
            latest = r.task_try(execution_id, task)
            if latest is not None and _alive(latest["status"]):
                raise Conflict(f"task {task!r} of execution {execution_id} is {latest['status']} (try "
                               f"{latest['try_number']}): stop it first or use task-execution restart")
    send_inbox_command(config, info.namespace, info.workflow, command, execution_id, task)
    return info


@_via_api
def stop_workflow_execution(workflow_execution_id: str, *, config: Config | None = None) -> None:
    """Ask the scheduler to stop the execution and every try of it that is alive (asynchronous)."""
    _command(workflow_execution_id, Command.STOP_EXECUTION, None, config)


def stop_workflow_executions(workflow_name: str, namespace: str | None = None, *,
                             config: Config | None = None) -> list[str]:
    """Stop every unfinished execution of the workflow; returns their ids."""
    config = _config(config)
    ids = [e.id for e in list_workflow_executions(workflow_name, namespace, config=config)
           if not _finished(e.status)]
    for execution_id in ids:
        stop_workflow_execution(execution_id, config=config)
    return ids


@_via_api
def delete_workflow_execution(workflow_execution_id: str, *, config: Config | None = None) -> None:
    from aiflow.ops._common import _owned_row
    from aiflow.store.db import Store
    from aiflow.store.models import ExecutionRow

    with Store(_config(config)).session() as s:
        row, _ = _owned_row(s, ExecutionRow, workflow_execution_id, "workflow execution")
        if not _finished(row.status):
            raise Conflict(f"workflow execution {workflow_execution_id} is {row.status}: stop it first")
        s.delete(row)


# -- task executions -------------------------------------------------------------------------
@_via_api
def start_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    """START the task in the execution: a new try. Conflict if a try of it is alive (QUEUED, RUNNING,
    RETRYING, STOPPING: stop it first, or restart it) or the execution has finished."""
    _command(workflow_execution_id, Command.START_TASK, task_name, config)


@_via_api
def stop_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    _command(workflow_execution_id, Command.STOP_TASK, task_name, config)


@_via_api
def restart_task_execution(workflow_execution_id: str, task_name: str, *, config: Config | None = None) -> None:
    _command(workflow_execution_id, Command.RESTART_TASK, task_name, config)


@_via_api
def list_task_executions(workflow_execution_id: str, *, config: Config | None = None) -> list[TaskExecutionInfo]:
    with reading(_config(config)) as r:
        if r.execution(workflow_execution_id) is None:
            raise _no_execution(workflow_execution_id)
        rows = r.tries(workflow_execution_id)
    return [TaskExecutionInfo(**row) for row in rows]


@_via_api
def get_task_execution(workflow_execution_id: str, task_name: str, try_number: int | None = None, *,
                       config: Config | None = None) -> TaskExecutionInfo:
    """A try of the task (the latest unless `try_number` is given)."""
    with reading(_config(config)) as r:
        row = r.task_try(workflow_execution_id, task_name, try_number)
    if row is None:
        raise NotFound(f"no try of task {task_name!r} in execution {workflow_execution_id}")
    return TaskExecutionInfo(**row)


@_via_api
def task_log_path(workflow_execution_id: str, task_name: str, try_number: int | None = None, *,
                  config: Config | None = None) -> Path:
    """Where the worker writes the try's output (on the worker's machine)."""
    config = _config(config)
    info = get_task_execution(workflow_execution_id, task_name, try_number, config=config)
    execution = get_workflow_execution(workflow_execution_id, config=config)
    assert execution is not None
    return config.home / "logs" / execution.workflow / workflow_execution_id / task_name / f"{info.try_number}.log"


# -- task output -----------------------------------------------------------------------------
# How long a reader waits for the last chunk of a try that has ended (its worker ships the rest of the
# file within a batch or so); a try whose worker died never sends one.
LOG_END_GRACE = 10.0
# How long a reading of the logs topic may make no progress (Kafka away) before it gives up.
LOG_READ_TIMEOUT = 30.0


@dataclass
class TaskLog(_Info):
    """A piece of a try's output: `text` is its bytes from `start` to `position` (UTF-8, bad bytes
    replaced); `ended` once the try has ended and its output is complete; `source` is the local log file or
    the logs topic."""

    execution_id: str
    task: str
    try_number: int
    text: str
    start: int
    position: int
    ended: bool
    source: str


def _utf8_prefix(data: bytes) -> int:
    """The length of `data` without an incomplete UTF-8 sequence at its end (the rest comes later)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the start of the last sequence (or plain ASCII)
            need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
            return len(data) - back if need > back else len(data)
    return len(data)


class _Output:
    """Where a try's output is read from: this machine's log file if there is one, else the logs topic."""

    def __init__(self, config: Config, execution_id: str, task: str, try_number: int | None, start: int) -> None:
        self.config = config
        self.info = get_task_execution(execution_id, task, try_number, config=config)
        execution = get_workflow_execution(execution_id, config=config)
        if execution is None:
            raise NotFound(f"workflow execution {execution_id} does not exist")
        self.path = config.home / "logs" / execution.workflow / execution_id / task / f"{self.info.try_number}.log"
        self.local = self.path.is_file()
        self.position = max(0, start)  # the bytes before it are had (given as text, or left out)
        self.read_at = self.position  # of the local file: where the next read starts
        self.reader = None
        if not self.local:
            from aiflow.kafka.readers import TryLogReader
            from aiflow.kafka.topics import LOGS, name

            self.source = name(config, LOGS)
            self.reader = TryLogReader(config, execution_id, task, self.info.try_number, start=start,
                                       since=self.info.begin_date)
        else:
            self.source = str(self.path)
        self.ended = False
        self._pending = b""  # bytes of an incomplete UTF-8 sequence, held back until the rest comes
        self._over_since: float | None = None  # when the try was first seen ended, waiting for its last chunk
        self._checked = 0.0

    def alive(self) -> bool:
        self.info = get_task_execution(self.info.execution_id, self.info.task, self.info.try_number,
                                       config=self.config)
        return _alive(self.info.status)

    def take(self, timeout: float) -> bytes:
        """New bytes, waiting up to `timeout` for some (less when there are some)."""
        if self.reader is not None:
            data = self.reader.read(timeout)
            self.ended = self.reader.ended
            return data
        with open(self.path, "rb") as f:
            f.seek(self.read_at)
            data = f.read(1024 * 1024)
        self.read_at += len(data)
        if not data:
            time.sleep(timeout)
        return data

    def at_end(self) -> bool:
        """No more output is coming: the last chunk was read, or (looked at every 2 s) the try has ended
        and the file is read to its end or the logs topic has had nothing more for LOG_END_GRACE."""
        if self.ended:
            return True
        now = time.monotonic()
        if now - self._checked < 2.0:
            return False
        self._checked = now
        if self.alive():
            self._over_since = None
            return False
        if self.reader is None:
            self.ended = True
        else:
            self._over_since = self._over_since or now
            self.ended = self.reader.caught_up and now - self._over_since >= LOG_END_GRACE
        return self.ended

    def text(self, data: bytes, final: bool = False) -> tuple[str, int]:
        """The text of the held-back bytes and `data`, and the position after it."""
        data = self._pending + data
        cut = len(data) if final else _utf8_prefix(data)
        self._pending = data[cut:]
        self.position += cut
        return data[:cut].decode("utf-8", errors="replace"), self.position

    def piece(self, start: int, text: str) -> TaskLog:
        return TaskLog(self.info.execution_id, self.info.task, self.info.try_number, text, start, self.position,
                       self.ended, self.source)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def read_task_log(workflow_execution_id: str, task_name: str, try_number: int | None = None, *, start: int = 0,
                  tail: int | None = None, config: Config | None = None) -> TaskLog:
    """A try's output as it is now (the latest try unless `try_number` is given), from byte `start` on — only
    its last `tail` bytes, when given. It comes from this machine's log file when the try ran here, else
    from the logs topic (any machine that reaches Kafka; in client mode too). NotFound when the try ended
    and neither has any of it (it ran elsewhere before the logs topic existed, or its output is past
    `topics.logs_retention_ms`)."""
    output = _Output(_config(config), workflow_execution_id, task_name, try_number, start)
    try:
        if output.local and tail is not None:
            output.position = output.read_at = max(output.position, output.path.stat().st_size - tail)
        first = output.position
        data = bytearray()
        deadline = time.monotonic() + LOG_READ_TIMEOUT
        while True:
            new = output.take(0.2 if output.reader is not None else 0)
            if new:
                data += new
                deadline = time.monotonic() + LOG_READ_TIMEOUT
                if tail is not None and len(data) > 2 * tail:  # keep the reading bounded
                    first += len(data) - tail
                    output.position += len(data) - tail
                    del data[:len(data) - tail]
            reader = output.reader
            if reader is None:
                if not new:
                    break
            elif reader.ended or reader.caught_up:
                break
            elif time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read {output.source} to its end in {LOG_READ_TIMEOUT:.0f} s")
        if tail is not None and len(data) > tail:
            first += len(data) - tail
            output.position += len(data) - tail
            del data[:len(data) - tail]
        alive = output.alive()
        if output.reader is not None and not output.reader.found and not alive:
            raise NotFound(f"no output of task {task_name!r} try {output.info.try_number} of execution "
                           f"{workflow_execution_id}: no log file at {output.path} and none in {output.source} "
                           f"(it ran elsewhere before that topic existed, or it is past topics.logs_retention_ms)")
        output.ended = output.ended or (output.reader is None and not alive)
        text, _ = output.text(bytes(data), final=True)
        return output.piece(first, text)
    finally:
        output.close()


def follow_task_log(workflow_execution_id: str, task_name: str, try_number: int | None = None, *, start: int = 0,
                    idle: float = 1.0, stop: threading.Event | None = None,
                    config: Config | None = None) -> Generator[TaskLog, None, None]:
    """A try's output from byte `start` on as it comes, until it is complete (its last piece has `ended`) or
    `stop` is set: from this machine's log file when the try runs here, else from the logs topic. A
    piece with no text comes every `idle` seconds without output, so the caller can look up from time to
    time. Output is complete once the try's last chunk is read, or the try has ended and nothing more
    came for LOG_END_GRACE seconds (a try whose worker died sends no last chunk)."""
    output = _Output(_config(config), workflow_execution_id, task_name, try_number, start)
    try:
        quiet_since = time.monotonic()
        while stop is None or not stop.is_set():
            first = output.position
            data = output.take(min(idle, 0.5))
            done = not data and output.at_end()
            text, _ = output.text(data, final=done)
            if text or done:
                quiet_since = time.monotonic()
                yield output.piece(first, text)
            elif time.monotonic() - quiet_since >= idle:
                quiet_since = time.monotonic()
                yield output.piece(first, "")
            if done:
                return
    finally:
        output.close()
