"""The workflow of an execution, from its own snapshot (never "the latest"), loaded once per snapshot
in a process of the snapshot's own (aiflow/scheduler/sandbox.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from aiflow.config import Config
from aiflow.errors import AIFlowError, WorkflowFileError
from aiflow.scheduler.sandbox import SnapshotHost
from aiflow.sdk.workflow import Workflow
from aiflow.store.snapshots import fetch, file_in

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # sha256, namespace, workflow

# How long a snapshot that could not be loaded is refused before it is tried again. Its content never
# changes, but the reason may: a library installed since, a machine less busy than at the timeout.
RETRY_FAILED_AFTER = 600.0


class WorkflowCache:
    """The scheduler's loaded workflows, by (sha256, namespace, name), with the processes of those
    that have conditions of the user's. A snapshot that cannot be loaded is refused with its reason for
    RETRY_FAILED_AFTER seconds; then the next execution that needs it tries again.

    A workflow just uploaded can be loaded on a thread (`load_in_background`) while the scheduler goes
    on: loading runs the file in a process of its own, with its imports (a second or more for numpy
    and scikit-learn), which would otherwise hold up the first START of the new version. The thread
    only loads; the cache itself is changed by the scheduler's thread alone, when it next needs the
    workflow (`get` waits for a load still under way) or evicts."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.root = config.home / "scheduler" / "snapshots"
        self.limits: dict[str, Any] = {"load_timeout": float(config.values["workflows.load_timeout"]),
                                       "memory_mb": int(config.values["workflows.load_memory_mb"]),
                                       "condition_timeout": float(config.values["scheduler.condition_timeout"])}
        self._loaded: dict[Key, Workflow] = {}
        self._failed: dict[Key, tuple[str, float]] = {}  # reason, when to try again
        self._hosts: dict[Key, SnapshotHost] = {}
        self._loading: dict[Key, Future[tuple[SnapshotHost, Workflow]]] = {}
        self._loader: ThreadPoolExecutor | None = None
        # The hosts whose load is under way, so `close` can end a background one at once.
        self._starting: dict[Key, SnapshotHost] = {}
        self._starting_lock = threading.Lock()
        self._closing = False

    def get(self, namespace: str, name: str, uri: str, sha256: str, workflow_file: str) -> Workflow:
        """The workflow; WorkflowFileError with the reason if its snapshot cannot be loaded."""
        key = (sha256, namespace, name)
        wf = self._loaded.get(key)
        if wf is not None:
            return wf
        loading = self._loading.pop(key, None)
        failed = self._failed.get(key)
        if loading is None and failed is not None and time.monotonic() < failed[1]:
            raise WorkflowFileError(failed[0])
        try:
            host, wf = loading.result() if loading is not None else self._load(key, uri, workflow_file)
        except AIFlowError as exc:
            self._failed[key] = (str(exc), time.monotonic() + RETRY_FAILED_AFTER)
            log.error("scheduler: workflow %s.%s of snapshot %s cannot be loaded: %s", namespace, name, sha256[:12],
                      exc)
            raise WorkflowFileError(str(exc)) from None
        self._failed.pop(key, None)
        self._hosts[key] = host
        self._loaded[key] = wf
        return wf

    def _load(self, key: Key, uri: str, workflow_file: str) -> tuple[SnapshotHost, Workflow]:
        sha256, namespace, name = key
        if self._closing:
            raise WorkflowFileError(f"{workflow_file}: not loaded, the scheduler is stopping")
        folder = fetch(self.config, uri, sha256, self.root / sha256)  # checks the sha256 first
        host = SnapshotHost.for_workflow(file_in(folder, workflow_file), namespace, name, **self.limits)
        with self._starting_lock:
            if self._closing:
                raise WorkflowFileError(f"{workflow_file}: not loaded, the scheduler is stopping")
            self._starting[key] = host
        try:
            return host, host.workflow_object(host.load())
        except BaseException:
            host.close()
            raise
        finally:
            with self._starting_lock:
                self._starting.pop(key, None)

    def load_in_background(self, namespace: str, name: str, uri: str, sha256: str, workflow_file: str) -> None:
        """Start loading a workflow on the loader thread, unless it is loaded or loading already."""
        key = (sha256, namespace, name)
        if key in self._loaded or key in self._loading:
            return
        if self._loader is None:
            self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aiflow-snapshot-loader")
        self._loading[key] = self._loader.submit(self._load, key, uri, workflow_file)

    def load(self, namespace: str, name: str, uri: str, sha256: str, workflow_file: str) -> None:
        """Load ahead (outside any transaction); a failure is remembered for `get` to report."""
        try:
            self.get(namespace, name, uri, sha256, workflow_file)
        except WorkflowFileError:
            pass

    def revive(self) -> None:
        """Start again the processes that stopped answering (outside any transaction)."""
        for host in self._hosts.values():
            host.revive()

    def evict(self, keep: Collection[Key]) -> None:
        """Forget the loaded workflows no longer needed (no execution here runs them and they are no
        workflow's latest), and end their processes; failures whose retry time has come go too."""
        for key in [k for k, loading in self._loading.items() if k not in keep and loading.done()]:
            self._discard(self._loading.pop(key))
        for key in [k for k in self._loaded if k not in keep]:
            del self._loaded[key]
            host = self._hosts.pop(key, None)
            if host is not None:
                host.close()
        now = time.monotonic()
        for key in [k for k, (_, retry_at) in self._failed.items() if retry_at <= now]:
            del self._failed[key]

    def in_use(self) -> set[str]:
        """The sha256s of the snapshots loaded or loading here: their folders must stay (user code may
        read them)."""
        return {key[0] for key in self._loaded} | {key[0] for key in self._loading}

    def close(self) -> None:
        """End every snapshot process, a background load under way included: its process at once, not after
        `workflows.load_timeout` (a snapshot download under way is still waited for)."""
        with self._starting_lock:
            self._closing = True
            starting = list(self._starting.values())
        for host in starting:
            host.abort()
        if self._loader is not None:
            self._loader.shutdown(wait=True, cancel_futures=True)
        for loading in self._loading.values():
            self._discard(loading)
        self._loading.clear()
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()

    @staticmethod
    def _discard(loading: Future[tuple[SnapshotHost, Workflow]]) -> None:
        """End the process of a background load nobody took."""
        if loading.done() and not loading.cancelled() and loading.exception() is None:
            loading.result()[0].close()
