"""The built-in operators: a Python callable, and a bash command."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiflow.errors import AIFlowError, WorkflowDefinitionError
from aiflow.sdk.workflow import Operator, TaskRunContext, user_line


class PythonOperator(Operator):
    """Calls `python_callable(*op_args, **op_kwargs)` in the task's process."""

    def __init__(self, name: str, python_callable: Callable[..., Any], op_args: Sequence[Any] | None = None,
                 op_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if not callable(python_callable):
            raise WorkflowDefinitionError(f"task {name!r}: python_callable must be callable, got "
                                          f"{type(python_callable).__name__}", line=user_line())
        super().__init__(name, **kwargs)
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})

    def start(self, context: TaskRunContext) -> None:
        self.python_callable(*self.op_args, **self.op_kwargs)

    def describe(self) -> dict[str, Any]:
        fn = self.python_callable
        return {**super().describe(), "callable": getattr(fn, "__qualname__", repr(fn))}


class BashOperator(Operator):
    """Runs `bash -c bash_command` in the task's working directory, with `env` added to the environment.

    A non-zero exit fails the task. The command stays in the task's process group, so stopping the
    task (SIGTERM, then SIGKILL, to that group) stops the command and everything it started.
    """

    def __init__(self, name: str, bash_command: str, env: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        if not isinstance(bash_command, str) or not bash_command.strip():
            raise WorkflowDefinitionError(f"task {name!r}: bash_command must be a non-empty string",
                                          line=user_line())
        super().__init__(name, **kwargs)
        self.bash_command = bash_command
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, context: TaskRunContext) -> None:
        self._process = subprocess.Popen(["bash", "-c", self.bash_command], cwd=context.working_dir,
                                         env={**os.environ, **self.env})
        self.await_termination(context)

    def await_termination(self, context: TaskRunContext, timeout: float | None = None) -> None:
        if self._process is None:
            return
        code = self._process.wait(timeout=timeout)
        if code != 0:
            raise AIFlowError(f"bash command exited with code {code}: {self.bash_command}")

    def stop(self, context: TaskRunContext) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "bash_command": self.bash_command, "env": sorted(self.env)}
