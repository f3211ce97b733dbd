"""aiflow's pytest plugin: the `aiflow_stack` fixture, real aiflow services for integration tests.

Installing aiflow enables it (entry point `pytest11`: `aiflow`); `-p no:aiflow` disables it. Loading
it imports nothing of aiflow and starts nothing: the services start the first time a test asks for
the fixture, and stop at the end of the session.

    def test_my_workflow_runs(aiflow_stack):
        aiflow_stack.upload("flow.py")
        execution_id = aiflow_stack.start_execution("my_workflow")
        aiflow_stack.wait_for_execution(execution_id, "SUCCESS")
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from aiflow.testing._stack import AIFlowStack


@pytest.fixture(scope="session")
def aiflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AIFlowStack]:
    """`aiflow standalone` (scheduler, router, projector, worker) in a home of its own, for the session:
    on the cluster at `AIFLOW_KAFKA_BOOTSTRAP` if that is set, else with a local broker it starts."""
    from aiflow.testing._stack import AIFlowStack

    stack = AIFlowStack.start(tmp_path_factory.mktemp("aiflow-stack") / "home")
    try:
        yield stack
    finally:
        stack.stop()
