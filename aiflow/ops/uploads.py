"""Uploading a workflow file: it is loaded in a Python process of its own (its imports and top-level code are the
user's), and meanwhile this process loads the store and the Kafka client and packs the snapshot.

Light to import: the loader starts before the store and the Kafka client are imported, so their import
(a quarter of a second) runs beside the file's own (a second with scikit-learn) instead of before it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiflow.config import Config, without_credentials
from aiflow.errors import WorkflowFileError
from aiflow.ops._dispatch import _config, _ns, _via_api
from aiflow.process import python_module
from aiflow.sdk.workflow import NAMESPACE_ENV

if TYPE_CHECKING:
    from aiflow.ops.workflows import WorkflowInfo


class WorkflowLoading:
    """A workflow file being loaded by `python -m aiflow.sdk.loader`, within `workflows.load_timeout` (counted
    from the start) and under `workflows.load_memory_mb`."""

    def __init__(self, path: Path, namespace: str, config: Config) -> None:
        self.path = path
        self.timeout = float(config.values["workflows.load_timeout"])
        env = {**without_credentials(os.environ), NAMESPACE_ENV: namespace}  # the file is code: no secrets for it
        self.argv = [*python_module("aiflow.sdk.loader"), "--memory-mb",
                     str(config.values["workflows.load_memory_mb"]), str(path)]
        self.deadline = time.monotonic() + self.timeout
        self.finished = False
        self.process = subprocess.Popen(self.argv, cwd=path.parent, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)

    def result(self) -> list[dict[str, Any]]:
        """The file's workflows' descriptions; WorkflowFileError with the file's line and the error's last
        lines if it does not load."""
        try:
            stdout, stderr = self.process.communicate(timeout=max(0.0, self.deadline - time.monotonic()))
            self.finished = True
        except subprocess.TimeoutExpired:
            self.cancel()
            raise WorkflowFileError(f"{self.path}: loading it timed out after {self.timeout:.0f} s "
                                    "(workflows.load_timeout): does it loop, or wait for something, at import?"
                                    ) from None
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            raise WorkflowFileError(f"{self.path}: loading it crashed Python (exit {self.process.returncode}):\n"
                                    f"{tail}") from None
        if "error" in result:
            raise WorkflowFileError(result["error"])
        return list(result["workflows"])

    def cancel(self) -> None:
        """Stop the loader and whatever the file started (which may hold its output open after it exited);
        nothing once its output has been read to the end."""
        if self.finished:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.communicate()
        self.finished = True


def inspect_workflow_file(path: Path, namespace: str, config: Config) -> list[dict[str, Any]]:
    """Load the file in a separate Python process, within `workflows.load_timeout` and under
    `workflows.load_memory_mb`; return its workflows' descriptions or raise with the file's line and
    the error's last lines."""
    return WorkflowLoading(path, namespace, config).result()


@_via_api
def upload_workflows(workflow_file_path: str | os.PathLike[str],
                     artifacts: Sequence[str | os.PathLike[str]] | None = None, *,
                     namespace: str | None = None, config: Config | None = None) -> list[WorkflowInfo]:
    """Validate the file, snapshot it with its artifacts, and store and publish each workflow in it.

    A file that does not load is refused with its line and error, and nothing is stored. Uploading
    the same content again creates no new version. A disabled workflow stays disabled.
    """
    config = _config(config)
    path = Path(workflow_file_path).resolve()
    if not path.is_file():
        raise WorkflowFileError(f"{workflow_file_path}: no such file")
    loading = WorkflowLoading(path, _ns(config, namespace), config)
    try:
        from aiflow.ops.workflows import store_upload

        return store_upload(loading, [Path(a).resolve() for a in artifacts or []], config)
    finally:
        loading.cancel()
