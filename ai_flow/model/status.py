from aiflow.sdk.status import (
    TASK_ALIVE_SET,
    TASK_FINISHED_SET,
    WORKFLOW_ALIVE_SET,
    WORKFLOW_FINISHED_SET,
    TaskStatus,
    WorkflowStatus,
)

__all__ = ["TASK_ALIVE_SET", "TASK_FINISHED_SET", "WORKFLOW_ALIVE_SET", "WORKFLOW_FINISHED_SET", "TaskStatus",
           "WorkflowStatus"]
