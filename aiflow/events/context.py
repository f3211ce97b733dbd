"""The task context a worker puts in a task's environment, so the event client needs no configuration."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from aiflow.config import isolated_names

ENV_NAMESPACE = "AIFLOW_NAMESPACE"
ENV_WORKFLOW = "AIFLOW_WORKFLOW"
ENV_EXECUTION_ID = "AIFLOW_EXECUTION_ID"
ENV_TASK = "AIFLOW_TASK"
ENV_TRY_NUMBER = "AIFLOW_TRY_NUMBER"
# The worker's `worker.isolated_namespaces`, which it puts in every task's environment as it is in force.
ENV_ISOLATED_NAMESPACES = "AIFLOW_WORKER_ISOLATED_NAMESPACES"
# The context entry with which the event client stamps an event sent from a task: the task's own
# namespace, which the router checks against the namespace the event is sent into.
TASK_NAMESPACE_CONTEXT = "aiflow.task_namespace"


@dataclass(frozen=True)
class TaskContext:
    namespace: str
    workflow: str
    execution_id: str
    task: str
    try_number: int
    # Whether the task's namespace is isolated: its events may go only into it (worker.isolated_namespaces).
    isolated: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TaskContext | None:
        """The context of the task this process runs, or None outside a task."""
        env = os.environ if environ is None else environ
        if ENV_EXECUTION_ID not in env or ENV_TASK not in env:
            return None
        namespace = env.get(ENV_NAMESPACE, "default")
        isolated = isolated_names(env.get(ENV_ISOLATED_NAMESPACES, ""))
        return cls(namespace=namespace, workflow=env.get(ENV_WORKFLOW, ""),
                   execution_id=env[ENV_EXECUTION_ID], task=env[ENV_TASK],
                   try_number=int(env.get(ENV_TRY_NUMBER, "1")), isolated="*" in isolated or namespace in isolated)

    def to_env(self) -> dict[str, str]:
        """The task's variables. Isolation is not among them: the worker's environment holds
        `worker.isolated_namespaces` for every task (task_environment)."""
        return {ENV_NAMESPACE: self.namespace, ENV_WORKFLOW: self.workflow, ENV_EXECUTION_ID: self.execution_id,
                ENV_TASK: self.task, ENV_TRY_NUMBER: str(self.try_number)}

    @property
    def sender(self) -> str:
        return f"{self.workflow}/{self.execution_id}/{self.task}/{self.try_number}"
