"""What workflow authors write: workflows, operators, rules, conditions and state. No I/O."""

from aiflow.sdk.conditions import (
    Condition,
    MeetAllCondition,
    MeetAnyCondition,
    SingleEventCondition,
    TaskRule,
    TaskStatusAllMetCondition,
    TaskStatusCondition,
    WorkflowRule,
)
from aiflow.sdk.operators import BashOperator, PythonOperator
from aiflow.sdk.state import Context, State, StateDescriptor, ValueState, ValueStateDescriptor
from aiflow.sdk.status import ExecutionType, TaskAction, TaskStatus, WorkflowStatus
from aiflow.sdk.workflow import Operator, TaskRunContext, Workflow

__all__ = [
    "BashOperator", "Condition", "Context", "ExecutionType", "MeetAllCondition", "MeetAnyCondition", "Operator",
    "PythonOperator", "SingleEventCondition", "State", "StateDescriptor", "TaskAction", "TaskRule",
    "TaskRunContext", "TaskStatus", "TaskStatusAllMetCondition", "TaskStatusCondition", "ValueState",
    "ValueStateDescriptor", "Workflow", "WorkflowRule", "WorkflowStatus",
]
