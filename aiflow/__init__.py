"""aiflow: event-driven workflows for machine-learning and data pipelines, on Apache Kafka.

`import aiflow` gives what a workflow author needs and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiflow.errors import AIFlowError
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

if TYPE_CHECKING:
    from aiflow.events.client import EventClient, ListenerProcessor
    from aiflow.protocol.messages import Event

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The event client loads confluent-kafka: imported on first use, so `import aiflow` (and the pure
    # core: the SDK, the protocol, the scheduler's core) loads no Kafka client. Event loads the codec
    # and its schemas, which most CLI commands never need.
    if name in ("EventClient", "ListenerProcessor"):
        from aiflow.events import client

        return getattr(client, name)
    if name == "Event":
        from aiflow.protocol.messages import Event

        return Event
    raise AttributeError(f"module 'aiflow' has no attribute {name!r}")

__all__ = [
    "AIFlowError", "BashOperator", "Condition", "Context", "Event", "EventClient", "ListenerProcessor",
    "MeetAllCondition", "MeetAnyCondition", "Operator", "PythonOperator", "SingleEventCondition", "State",
    "StateDescriptor", "TaskAction", "TaskStatus", "TaskStatusAllMetCondition", "TaskStatusCondition",
    "ValueState", "ValueStateDescriptor", "Workflow", "WorkflowRule", "WorkflowStatus", "__version__",
]
