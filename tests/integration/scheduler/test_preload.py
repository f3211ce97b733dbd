"""A workflow uploaded while the services run is loaded ahead: the worker's warm fork server imports
what its file imports before its first try (aiflow/worker/zygote.py), so the try finds them loaded (the
file's own code still runs in it), and the scheduler loads the new version at once on a thread of its
own (aiflow/scheduler/workflows.py), so the first START does not wait for it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiflow import ops
from tests.integration.scheduler.conftest import System

FLOW = """
import os
import slowimport
from aiflow import Workflow, PythonOperator

def job():
    with open(os.path.join(os.path.dirname(slowimport.IMPORTS), "tries.txt"), "a") as f:
        f.write(f"{os.getpid()}\\n")

with Workflow(name="preloaded"):
    PythonOperator(name="t", python_callable=job)
"""

FIRST = """
from aiflow import Workflow, Operator

with Workflow(name="first"):
    Operator(name="nothing")
"""


@pytest.fixture
def preloading_system(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[System, Path]]:
    """The system, its worker's tasks able to import `slowimport`, which notes each process importing it."""
    site, imports = tmp_path / "site", tmp_path / "imports.txt"
    site.mkdir()
    (site / "slowimport.py").write_text(
        f"import os, time\ntime.sleep(0.5)\nIMPORTS = {str(imports)!r}\n"
        "kind = open('/proc/self/comm').read().strip()\n"
        "kind = 'sdk-host' if b'aiflow.sdk.host' in open('/proc/self/cmdline', 'rb').read() else kind\n"
        "with open(IMPORTS, 'a') as f:\n    f.write(f'{kind}-{os.getpid()}\\n')\n")
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(site)  # the worker's fork server starts with the system, inheriting it
    try:
        yield request.getfixturevalue("system"), imports
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def test_an_uploaded_workflow_is_loaded_ahead_by_the_scheduler_and_the_worker(
        preloading_system: tuple[System, Path]) -> None:
    system, imports = preloading_system
    # Only uploads a worker reads once it has started are preloaded: let it run a first execution.
    system.upload(FIRST, name="first.py")
    first = ops.start_workflow_execution("first", config=system.config)
    system.wait_for(lambda: system.status(first) == "SUCCESS", what="a first execution")
    system.upload(FLOW)  # its check at upload imports slowimport too, in a process of its own
    # Before any START: the scheduler loads the new version (in a process of its own) and the worker's
    # warm fork server imports what the file imports.
    system.wait_for(lambda: {"aiflow-warm", "sdk-host"} <= {name for name, _ in importers(imports)},
                    what="a warm fork server and the scheduler's snapshot process to import slowimport")
    time.sleep(1.0)  # and the warm server to say it is ready (it imported slowimport: only its reply is left)
    loaded = [pid for name, pid in importers(imports) if name == "sdk-host"]
    for _ in range(2):
        execution = ops.start_workflow_execution("preloaded", config=system.config)
        system.wait_for(lambda: system.status(execution) == "SUCCESS", what="the execution")  # noqa: B023
    tries = (imports.parent / "tries.txt").read_text().split()
    assert len(set(tries)) == 2
    # Neither try imported slowimport itself (the upload's check and the scheduler, which load the file
    # in processes of their own, did).
    assert not set(tries) & {pid for _, pid in importers(imports)}
    # and the scheduler decided with the snapshot it had loaded at the upload, not another load
    assert [pid for name, pid in importers(imports) if name == "sdk-host"] == loaded


def importers(imports: Path) -> list[tuple[str, str]]:
    """(process name, pid) of each process that imported slowimport."""
    lines = imports.read_text().split() if imports.exists() else []
    return [(line.rsplit("-", 1)[0], line.rsplit("-", 1)[1]) for line in lines]
