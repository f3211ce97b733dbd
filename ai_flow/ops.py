"""`ai_flow.ops`: the original Python API names, over aiflow.ops."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiflow.ops import (
        add_namespace,
        add_workflow_schedule,
        add_workflow_trigger,
        delete_namespace,
        delete_workflow,
        delete_workflow_execution,
        delete_workflow_schedule,
        delete_workflow_snapshot,
        delete_workflow_trigger,
        disable_workflow,
        enable_workflow,
        get_namespace,
        get_task_execution,
        get_workflow,
        get_workflow_execution,
        get_workflow_schedule,
        get_workflow_snapshot,
        get_workflow_trigger,
        list_namespaces,
        list_task_executions,
        list_workflow_executions,
        list_workflow_schedules,
        list_workflow_snapshots,
        list_workflow_triggers,
        list_workflows,
        pause_workflow_schedule,
        pause_workflow_trigger,
        restart_task_execution,
        resume_workflow_schedule,
        resume_workflow_trigger,
        start_task_execution,
        start_workflow_execution,
        stop_task_execution,
        stop_workflow_execution,
        stop_workflow_executions,
        update_namespace,
        upload_workflows,
    )

    list_namespace = list_namespaces

# The names are aiflow.ops's, looked up there when first used: importing this module (as workflow files
# do, `from ai_flow import ops`) loads none of the store or the Kafka client, which a try or the load of
# the file at upload seldom needs (a quarter of a second of imports).
_RENAMED = {"list_namespace": "list_namespaces"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'ai_flow.ops' has no attribute {name!r}")
    import aiflow.ops

    value = getattr(aiflow.ops, _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "add_workflow_schedule", "add_workflow_trigger", "delete_workflow_execution", "delete_workflow_schedule",
    "delete_workflow_trigger", "get_task_execution", "get_workflow_execution", "get_workflow_schedule",
    "get_workflow_trigger", "list_task_executions", "list_workflow_executions", "list_workflow_schedules",
    "list_workflow_triggers", "pause_workflow_schedule", "pause_workflow_trigger", "restart_task_execution",
    "resume_workflow_schedule", "resume_workflow_trigger", "start_task_execution", "start_workflow_execution",
    "stop_task_execution", "stop_workflow_execution", "stop_workflow_executions",
    "add_namespace", "delete_namespace", "delete_workflow", "delete_workflow_snapshot", "disable_workflow",
    "enable_workflow", "get_namespace", "get_workflow", "get_workflow_snapshot", "list_namespace",
    "list_namespaces", "list_workflow_snapshots", "list_workflows", "update_namespace", "upload_workflows",
]
