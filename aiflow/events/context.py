"""The task context a worker puts in a task's environment, so the event client needs no configuration."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_NAMESPACE = "AIFLOW_NAMESPACE"
ENV_WORKFLOW = "AIFLOW_WORKFLOW"
ENV_EXECUTION_ID = "AIFLOW_EXECUTION_ID"
ENV_TASK = "AIFLOW_TASK"
ENV_TRY_NUMBER = "AIFLOW_TRY_NUMBER"


@dataclass(frozen=True)
class TaskContext:
    namespace: str
    workflow: str
    execution_id: str
    task: str
    try_number: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TaskContext | None:
        """The context of the task this process runs, or None outside a task."""
        env = os.environ if environ is None else environ
        if ENV_EXECUTION_ID not in env or ENV_TASK not in env:
            return None
        return cls(namespace=env.get(ENV_NAMESPACE, "default"), workflow=env.get(ENV_WORKFLOW, ""),
                   execution_id=env[ENV_EXECUTION_ID], task=env[ENV_TASK],
                   try_number=int(env.get(ENV_TRY_NUMBER, "1")))

    def to_env(self) -> dict[str, str]:
        return {ENV_NAMESPACE: self.namespace, ENV_WORKFLOW: self.workflow, ENV_EXECUTION_ID: self.execution_id,
                ENV_TASK: self.task, ENV_TRY_NUMBER: str(self.try_number)}

    @property
    def sender(self) -> str:
        return f"{self.workflow}/{self.execution_id}/{self.task}/{self.try_number}"
