"""aiflow: event-driven workflows for machine-learning and data pipelines, on Apache Kafka.

`import aiflow` gives what a workflow author needs and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiflow.errors import AIFlowError

if TYPE_CHECKING:
    from aiflow.events.client import EventClient, ListenerProcessor
    from aiflow.protocol.messages import Event
    from aiflow.sdk import (
        BashOperator,
        Condition,
        Context,
        MeetAllCondition,
        MeetAnyCondition,
        Operator,
        PythonOperator,
        SingleEventCondition,
        State,
        StateDescriptor,
        TaskAction,
        TaskStatus,
        TaskStatusAllMetCondition,
        TaskStatusCondition,
        ValueState,
        ValueStateDescriptor,
        Workflow,
        WorkflowRule,
        WorkflowStatus,
    )

__version__ = "0.1.0"

# Where each public name lives. They are imported on first use (PEP 562), so `import aiflow` — which
# every `aiflow.x` import runs first — loads only the package: the CLI, the services and the pure core
# load the SDK (its cron parser), the event client (confluent-kafka) and Event (the codec and its
# schemas) only when they use them.
_HOMES = {
    **dict.fromkeys(("BashOperator", "Condition", "Context", "MeetAllCondition", "MeetAnyCondition", "Operator",
                     "PythonOperator", "SingleEventCondition", "State", "StateDescriptor", "TaskAction", "TaskStatus",
                     "TaskStatusAllMetCondition", "TaskStatusCondition", "ValueState", "ValueStateDescriptor",
                     "Workflow", "WorkflowRule", "WorkflowStatus"), "aiflow.sdk"),
    "EventClient": "aiflow.events.client",
    "ListenerProcessor": "aiflow.events.client",
    "Event": "aiflow.protocol.messages",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'aiflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "AIFlowError", "BashOperator", "Condition", "Context", "Event", "EventClient", "ListenerProcessor",
    "MeetAllCondition", "MeetAnyCondition", "Operator", "PythonOperator", "SingleEventCondition", "State",
    "StateDescriptor", "TaskAction", "TaskStatus", "TaskStatusAllMetCondition", "TaskStatusCondition",
    "ValueState", "ValueStateDescriptor", "Workflow", "WorkflowRule", "WorkflowStatus", "__version__",
]
