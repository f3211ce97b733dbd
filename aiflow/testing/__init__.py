"""Test your own workflows without a broker: `WorkflowTest` runs a workflow file in-process on the
scheduler's own core, with scripted events and a fake clock (docs/testing.md).

    from aiflow.testing import WorkflowTest

    def test_training_starts_on_new_data():
        wt = WorkflowTest("flow.py")
        ex = wt.start()
        wt.send_event("data_prepared")
        ex.assert_started("training", cause="on event 'data_prepared'")

Importing it loads no Kafka client. For integration tests against real services, the pytest plugin
(`aiflow.testing.pytest_plugin`, enabled by installing aiflow) gives the `aiflow_stack` fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiflow.scheduler.core import Settings, TaskTry
    from aiflow.testing._harness import Change, ExecutionHandle, WorkflowTest, WorkflowTestError, load_workflow_file
    from aiflow.testing._stack import AIFlowStack

_NAMES = {
    "Change": "aiflow.testing._harness", "ExecutionHandle": "aiflow.testing._harness",
    "WorkflowTest": "aiflow.testing._harness", "WorkflowTestError": "aiflow.testing._harness",
    "load_workflow_file": "aiflow.testing._harness", "Settings": "aiflow.scheduler.core",
    "TaskTry": "aiflow.scheduler.core", "AIFlowStack": "aiflow.testing._stack",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that loading the pytest plugin (a submodule) costs next to nothing.
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'aiflow.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["AIFlowStack", "Change", "ExecutionHandle", "Settings", "TaskTry", "WorkflowTest", "WorkflowTestError",
           "load_workflow_file"]
