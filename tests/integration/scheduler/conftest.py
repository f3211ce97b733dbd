"""A running aiflow — router, scheduler, projector and a worker — in this test process, on the session broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiflow import ops
from aiflow.config import Config
from aiflow.kafka import topics
from aiflow.scheduler.process import run_services
from aiflow.scheduler.router import Router
from aiflow.scheduler.service import Scheduler
from aiflow.store.projector import Projector
from aiflow.worker.service import Worker
from tests.conftest import make_config


@dataclass
class System:
    config: Config
    tmp: Path

    def upload(self, source: str, name: str = "flow.py") -> None:
        path = self.tmp / name
        path.write_text(source)
        ops.upload_workflows(path, config=self.config)

    def wait_for(self, check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.2)

    def tries(self, execution_id: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for t in ops.list_task_executions(execution_id, config=self.config):
            found.setdefault(t.task, []).append(t.status)
        return found

    def status(self, execution_id: str) -> str | None:
        info = ops.get_workflow_execution(execution_id, config=self.config)
        return info.status if info else None


@pytest.fixture
def system(kafka_bootstrap: str, tmp_path: Path) -> Iterator[System]:
    config = make_config(tmp_path / "home", kafka_bootstrap, AIFLOW_HEARTBEAT_TIMEOUT="30")
    topics.create_topics(config)
    stop = threading.Event()
    services = [("router", Router(config).run), ("scheduler", Scheduler(config).run),
                ("projector", Projector(config).run),
                ("worker", Worker(config, slots=6, heartbeat_interval=1.0, stop_grace=3.0).run)]
    thread = threading.Thread(target=run_services, args=("test", services, stop), daemon=True)
    thread.start()
    yield System(config, tmp_path)
    stop.set()
    thread.join(timeout=60)
