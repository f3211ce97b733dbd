from aiflow.sdk.conditions import (
    MeetAllCondition,
    MeetAnyCondition,
    SingleEventCondition,
    TaskStatusAllMetCondition,
    TaskStatusCondition,
)

__all__ = ["MeetAllCondition", "MeetAnyCondition", "SingleEventCondition", "TaskStatusAllMetCondition",
           "TaskStatusCondition"]
