"""The Python API that the CLI and users share: namespaces, workflows, snapshots, executions and tasks,
triggers and schedules.

Every function takes an optional `config` (default: `Config.load()`); `namespace=None` means the
configured default namespace. Errors are `aiflow.errors` exceptions with a message that says what
to do.

The functions change the store and tell the rest of the system through Kafka; `_publish` is the only
module here that talks to Kafka.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiflow.ops._publish import prepare_to_send
    from aiflow.ops.executions import (
        ExecutionInfo,
        TaskExecutionInfo,
        TaskLog,
        delete_workflow_execution,
        follow_task_log,
        get_task_execution,
        get_workflow_execution,
        list_task_executions,
        list_workflow_executions,
        new_execution_id,
        read_task_log,
        restart_task_execution,
        scheduler_running,
        start_task_execution,
        start_workflow_execution,
        stop_task_execution,
        stop_workflow_execution,
        stop_workflow_executions,
        task_log_path,
        wait_for_execution,
    )
    from aiflow.ops.namespaces import (
        DEFAULT_NAMESPACE,
        NamespaceInfo,
        add_namespace,
        delete_namespace,
        get_namespace,
        list_namespaces,
        update_namespace,
    )
    from aiflow.ops.snapshots import (
        SnapshotInfo,
        delete_workflow_snapshot,
        delete_workflow_snapshots,
        get_workflow_snapshot,
        list_workflow_snapshots,
    )
    from aiflow.ops.uploads import inspect_workflow_file, upload_workflows
    from aiflow.ops.workflow_rules import (
        ScheduleInfo,
        TriggerInfo,
        add_workflow_schedule,
        add_workflow_trigger,
        delete_workflow_schedule,
        delete_workflow_schedules,
        delete_workflow_trigger,
        delete_workflow_triggers,
        get_workflow_schedule,
        get_workflow_trigger,
        list_workflow_schedules,
        list_workflow_triggers,
        pause_workflow_schedule,
        pause_workflow_trigger,
        resume_workflow_schedule,
        resume_workflow_trigger,
    )
    from aiflow.ops.workflows import (
        WorkflowInfo,
        delete_workflow,
        disable_workflow,
        enable_workflow,
        get_workflow,
        list_workflows,
    )

# Each name's module, imported on first use (PEP 562): a command that lists executions loads
# ops.executions and what it needs, not the modules that upload workflows or manage triggers.
_MODULES: dict[str, tuple[str, ...]] = {
    "executions": ("ExecutionInfo", "TaskExecutionInfo", "TaskLog", "delete_workflow_execution", "follow_task_log",
                   "get_task_execution", "get_workflow_execution", "list_task_executions", "list_workflow_executions",
                   "new_execution_id", "read_task_log", "restart_task_execution", "scheduler_running",
                   "start_task_execution", "start_workflow_execution", "stop_task_execution",
                   "stop_workflow_execution", "stop_workflow_executions", "task_log_path", "wait_for_execution"),
    "namespaces": ("DEFAULT_NAMESPACE", "NamespaceInfo", "add_namespace", "delete_namespace", "get_namespace",
                   "list_namespaces", "update_namespace"),
    "snapshots": ("SnapshotInfo", "delete_workflow_snapshot", "delete_workflow_snapshots", "get_workflow_snapshot",
                  "list_workflow_snapshots"),
    "workflow_rules": ("ScheduleInfo", "TriggerInfo", "add_workflow_schedule", "add_workflow_trigger",
                       "delete_workflow_schedule", "delete_workflow_schedules", "delete_workflow_trigger",
                       "delete_workflow_triggers", "get_workflow_schedule", "get_workflow_trigger",
                       "list_workflow_schedules", "list_workflow_triggers", "pause_workflow_schedule",
                       "pause_workflow_trigger", "resume_workflow_schedule", "resume_workflow_trigger"),
    "_publish": ("prepare_to_send",),
    "uploads": ("inspect_workflow_file", "upload_workflows"),
    "workflows": ("WorkflowInfo", "delete_workflow", "disable_workflow", "enable_workflow", "get_workflow",
                  "list_workflows"),
}
_HOMES = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'aiflow.ops' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"aiflow.ops.{home}"), name)
    globals()[name] = value  # found once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    # namespaces
    "DEFAULT_NAMESPACE", "NamespaceInfo", "add_namespace", "delete_namespace", "get_namespace", "list_namespaces",
    "update_namespace",
    # workflows
    "WorkflowInfo", "delete_workflow", "disable_workflow", "enable_workflow", "get_workflow", "inspect_workflow_file",
    "list_workflows", "upload_workflows",
    # snapshots
    "SnapshotInfo", "delete_workflow_snapshot", "delete_workflow_snapshots", "get_workflow_snapshot",
    "list_workflow_snapshots",
    # executions and tasks
    "ExecutionInfo", "TaskExecutionInfo", "TaskLog", "delete_workflow_execution", "follow_task_log",
    "get_task_execution", "get_workflow_execution", "list_task_executions", "list_workflow_executions",
    "new_execution_id", "prepare_to_send", "read_task_log", "restart_task_execution", "scheduler_running",
    "start_task_execution", "start_workflow_execution", "stop_task_execution", "stop_workflow_execution",
    "stop_workflow_executions", "task_log_path", "wait_for_execution",
    # triggers and schedules
    "ScheduleInfo", "TriggerInfo", "add_workflow_schedule", "add_workflow_trigger", "delete_workflow_schedule",
    "delete_workflow_schedules", "delete_workflow_trigger", "delete_workflow_triggers", "get_workflow_schedule",
    "get_workflow_trigger", "list_workflow_schedules", "list_workflow_triggers", "pause_workflow_schedule",
    "pause_workflow_trigger", "resume_workflow_schedule", "resume_workflow_trigger",
]
