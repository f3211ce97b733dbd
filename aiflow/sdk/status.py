"""Actions, statuses and the sets they form."""

from __future__ import annotations

from enum import Enum


class TaskAction(str, Enum):
    START = "START"
    STOP = "STOP"
    RESTART = "RESTART"


class TaskStatus(str, Enum):
    INIT = "INIT"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    RETRYING = "RETRYING"


class WorkflowStatus(str, Enum):
    INIT = "INIT"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


class ExecutionType(str, Enum):
    MANUAL = "MANUAL"
    EVENT = "EVENT"
    PERIODIC = "PERIODIC"


TASK_FINISHED_SET = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.STOPPED})
# A task in one of these has a try that is, or is about to be, running: START on it is a no-op.
TASK_ALIVE_SET = frozenset({TaskStatus.INIT, TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.RETRYING,
                            TaskStatus.STOPPING})
WORKFLOW_FINISHED_SET = frozenset({WorkflowStatus.SUCCESS, WorkflowStatus.FAILED, WorkflowStatus.STOPPED})
WORKFLOW_ALIVE_SET = frozenset({WorkflowStatus.INIT, WorkflowStatus.RUNNING})


def task_status_event_key(namespace: str, workflow: str, task: str) -> str:
    """The event key under which a task's status changes are announced (the original AIFlow's form)."""
    return f"[task_status_change].{namespace}.{workflow}.{task}"
