"""The workflow of an execution, from its own snapshot (never "the latest"), loaded once per snapshot
in a process of the snapshot's own (aiflow/scheduler/sandbox.py)."""

from __future__ import annotations

import logging

from aiflow.config import Config
from aiflow.errors import AIFlowError, WorkflowFileError
from aiflow.scheduler.sandbox import SnapshotHost
from aiflow.sdk.workflow import Workflow
from aiflow.store.snapshots import fetch, file_in

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # sha256, namespace, workflow


class WorkflowCache:
    """The scheduler's loaded workflows, by (sha256, namespace, name). A snapshot that cannot be
    loaded is remembered with its reason: its content never changes, so neither does the outcome
    (restart the scheduler after installing a library it lacked)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.root = config.home / "scheduler" / "snapshots"
        self.load_timeout = float(config.values["workflows.load_timeout"])
        self.memory_mb = int(config.values["workflows.load_memory_mb"])
        self.condition_timeout = float(config.values["scheduler.condition_timeout"])
        self._loaded: dict[Key, Workflow] = {}
        self._failed: dict[Key, str] = {}
        self._hosts: dict[Key, SnapshotHost] = {}

    def get(self, namespace: str, name: str, uri: str, sha256: str, workflow_file: str) -> Workflow:
        """The workflow; WorkflowFileError with the reason if its snapshot cannot be loaded."""
        key = (sha256, namespace, name)
        wf = self._loaded.get(key)
        if wf is not None:
            return wf
        if key in self._failed:
            raise WorkflowFileError(self._failed[key])
        try:
            folder = fetch(self.config, uri, sha256, self.root / sha256)  # checks the sha256 first
            host = SnapshotHost(file_in(folder, workflow_file), namespace, name, load_timeout=self.load_timeout,
                                memory_mb=self.memory_mb, condition_timeout=self.condition_timeout)
            wf = host.workflow_object(host.load())
        except AIFlowError as exc:
            self._failed[key] = str(exc)
            log.error("scheduler: workflow %s.%s of snapshot %s cannot be loaded: %s", namespace, name, sha256[:12],
                      exc)
            raise WorkflowFileError(str(exc)) from None
        self._hosts[key] = host
        self._loaded[key] = wf
        return wf

    def load(self, namespace: str, name: str, uri: str, sha256: str, workflow_file: str) -> None:
        """Load ahead (outside any transaction); a failure is remembered for `get` to report."""
        try:
            self.get(namespace, name, uri, sha256, workflow_file)
        except WorkflowFileError:
            pass

    def in_use(self) -> set[str]:
        return {key[0] for key in self._loaded}

    def close(self) -> None:
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()
