from aiflow.sdk.conditions import TaskRule, WorkflowRule

__all__ = ["TaskRule", "WorkflowRule"]
