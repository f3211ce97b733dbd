"""Loading the workflow of an execution from its own snapshot (never "the latest"), once per sha256."""

from __future__ import annotations

from aiflow.config import Config
from aiflow.sdk.loader import load_workflow
from aiflow.sdk.workflow import Workflow
from aiflow.store.snapshots import fetch, file_in


class WorkflowCache:
    """The scheduler's loaded workflows, by (sha256, namespace, name)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.root = config.home / "scheduler" / "snapshots"
        self._loaded: dict[tuple[str, str, str], Workflow] = {}

    def get(self, namespace: str, name: str, uri: str, sha256: str, workflow_file: str) -> Workflow:
        key = (sha256, namespace, name)
        wf = self._loaded.get(key)
        if wf is None:
            folder = fetch(self.config, uri, sha256, self.root / sha256)  # checks the sha256 first
            wf = load_workflow(file_in(folder, workflow_file), namespace, name)
            self._loaded[key] = wf
        return wf
