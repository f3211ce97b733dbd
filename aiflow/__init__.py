"""aiflow: event-driven workflows for machine-learning and data pipelines, on Apache Kafka.

`import aiflow` gives what a workflow author needs and nothing else.
"""

from aiflow.errors import AIFlowError
from aiflow.events import Event, EventClient, ListenerProcessor
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

__all__ = [
    "AIFlowError", "BashOperator", "Condition", "Context", "Event", "EventClient", "ListenerProcessor",
    "MeetAllCondition", "MeetAnyCondition", "Operator", "PythonOperator", "SingleEventCondition", "State",
    "StateDescriptor", "TaskAction", "TaskStatus", "TaskStatusAllMetCondition", "TaskStatusCondition",
    "ValueState", "ValueStateDescriptor", "Workflow", "WorkflowRule", "WorkflowStatus", "__version__",
]
